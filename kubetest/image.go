package kubetest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageFile is one file of an image: Name, its path in the image, holds
// the content of Src on the host (symbolic links followed) or Data.
type imageFile struct {
	Name string
	Src  string
	Data []byte
	Mode int64
}

// writeFilesImage writes to path an image archive (the format docker save
// writes, which ctr images import reads) of the image ref: one layer
// holding files, the directories they need and an empty /tmp, with entry
// (e.g. "/faultline") as its entrypoint and env beside its PATH.
func writeFilesImage(path, ref string, files []imageFile, entry string, env []string) error {
	layer, err := layerTar(files)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	}, tarball.WithCompressionLevel(gzip.NoCompression))
	if err != nil {
		return err
	}
	// The configuration first: AppendLayers adds each layer's diff ID to it.
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{entry},
			Env:        append([]string{"PATH=/:/usr/bin:/bin"}, env...),
			WorkingDir: "/tmp",
		},
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

// layerTar is the tar stream of files, each directory they need written
// once before them, in a stable order.
func layerTar(files []imageFile) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := map[string]bool{}
	var mkdir func(d string, mode int64) error
	mkdir = func(d string, mode int64) error {
		if d == "." || d == "/" || dirs[d] {
			return nil
		}
		if err := mkdir(path.Dir(d), 0o755); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: epoch})
	}
	if err := mkdir("/tmp", 0o1777); err != nil {
		return nil, err
	}
	for _, f := range files {
		data := f.Data
		if f.Src != "" {
			var err error
			if data, err = os.ReadFile(f.Src); err != nil {
				return nil, err
			}
		}
		if err := mkdir(path.Dir(f.Name), 0o755); err != nil {
			return nil, err
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(f.Name, "/"), Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// hostPrograms returns the image files of the host's dynamically linked
// programs and every library they load (as ldd names them, at the same
// paths), executable.
func hostPrograms(programs ...string) ([]imageFile, error) {
	seen := map[string]bool{}
	var files []imageFile
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			files = append(files, imageFile{Name: p, Src: p, Mode: 0o755})
		}
	}
	for _, p := range programs {
		add(p)
		out, err := exec.Command("ldd", p).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", p, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			// "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)"
			// or "/lib64/ld-linux-x86-64.so.2 (0x...)".
			f := strings.Fields(sc.Text())
			for _, w := range f {
				if strings.HasPrefix(w, "/") {
					add(w)
					break
				}
			}
		}
	}
	return files, nil
}

// hostTree returns the image files of every regular file under dir on the
// host, at the same paths, except those under a directory named in skip.
func hostTree(dir string, skip ...string) ([]imageFile, error) {
	var files []imageFile
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			for _, s := range skip {
				if d.Name() == s {
					return filepath.SkipDir
				}
			}
			return nil
		}
		info, err := os.Stat(p) // follows links
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		files = append(files, imageFile{Name: p, Src: p, Mode: int64(info.Mode().Perm())})
		return nil
	})
	return files, err
}

// ShopImage runs the faultline binary (entrypoint /faultline) beside
// the host's PostgreSQL server and redis-server with what they load, so
// that "faultline shop postgres" and "faultline shop cache --server
// redis" run the real servers in a pod.
const ShopImage = "faultline.local/shop:test"

// shopImageFiles returns the files of ShopImage: faultline (the static
// binary at bin), PostgreSQL's initdb and postgres (the newest
// /usr/lib/postgresql/N), its modules and share files, redis-server,
// /bin/sh (initdb runs the server through it), the UTC zone, and a
// "postgres" user to run the server as.
func shopImageFiles(bin string) ([]imageFile, error) {
	pgBins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(pgBins) == 0 {
		return nil, fmt.Errorf("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql")
	}
	sort.Strings(pgBins)
	pg := filepath.Dir(filepath.Dir(pgBins[len(pgBins)-1])) // /usr/lib/postgresql/N
	redis, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed: apt-get install redis-server")
	}
	files := []imageFile{
		{Name: "/faultline", Src: bin, Mode: 0o755},
		{Name: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/tmp:/bin/sh\n")},
		{Name: "/etc/group", Data: []byte("root:x:0:\npostgres:x:999:\n")},
		{Name: "/usr/share/zoneinfo/UTC", Src: "/usr/share/zoneinfo/UTC"},
		{Name: "/usr/share/zoneinfo/Etc/UTC", Src: "/usr/share/zoneinfo/Etc/UTC"},
	}
	progs, err := hostPrograms(filepath.Join(pg, "bin/initdb"), filepath.Join(pg, "bin/postgres"), "/bin/sh")
	if err != nil {
		return nil, err
	}
	files = append(files, progs...)
	// redis-server takes its mode from its name: it keeps the name.
	rprogs, err := hostPrograms(redis)
	if err != nil {
		return nil, err
	}
	for _, f := range rprogs {
		if !hasFile(files, f.Name) {
			files = append(files, f)
		}
	}
	mods, err := hostTree(filepath.Join(pg, "lib"), "bitcode")
	if err != nil {
		return nil, err
	}
	for _, f := range mods {
		if !strings.HasPrefix(filepath.Base(f.Name), "llvmjit") {
			files = append(files, f)
		}
	}
	share, err := hostTree(filepath.Join("/usr/share/postgresql", filepath.Base(pg)), "man")
	if err != nil {
		return nil, err
	}
	return append(files, share...), nil
}

func hasFile(files []imageFile, name string) bool {
	for _, f := range files {
		if f.Name == name {
			return true
		}
	}
	return false
}
