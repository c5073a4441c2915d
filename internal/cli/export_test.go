package cli

// DirName is dirName, for tests.
var DirName = dirName

// Exposure is exposure, for tests.
var Exposure = exposure
