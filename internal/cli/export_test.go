package cli

// DirName is dirName, for tests.
var DirName = dirName
