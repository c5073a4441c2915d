package shop

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/faultline/faultline/internal/freeport"
)

// FindPostgres returns the directory of PostgreSQL's server binaries
// (initdb, postgres): the newest /usr/lib/postgresql/N/bin, else the one
// on PATH.
func FindPostgres() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): apt-get install postgresql")
}

func pgVersion(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// Postgres is a PostgreSQL server in a directory of its own, on loopback.
type Postgres struct {
	Dir     string // holds data/ and the socket
	Port    int
	Listen  string // listen_addresses
	PIDFile string // data/postmaster.pid: its first line is the postmaster's pid
	// MaxConnections is the server's max_connections: what a client must
	// hold to leave none for the shop.
	MaxConnections int
	cmd            *exec.Cmd
	done           chan struct{}
	temp           bool
}

// PostgresConfig configures StartPostgres.
type PostgresConfig struct {
	Dir  string // default: a new temporary directory, removed by Stop
	Port int    // default: a free port
	// MaxConnections is the server's max_connections (default 300).
	MaxConnections int
	// Listen is the address the server takes TCP connections on (default
	// 127.0.0.1; 0.0.0.0 or * in a pod, for its Service).
	Listen string
	// Log receives the server's output (default: discarded).
	Log *os.File
}

// StartPostgres initialises a database cluster and starts PostgreSQL on
// 127.0.0.1, tuned for tests (no fsync). PostgreSQL refuses to run as
// root: as root it runs as the "postgres" user (Debian's package creates
// it). The server dies with this process.
func StartPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	bin, err := FindPostgres()
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: cfg.Dir, Port: cfg.Port, Listen: cmp.Or(cfg.Listen, "127.0.0.1"), MaxConnections: cmp.Or(cfg.MaxConnections, 300)}
	if p.Dir == "" {
		if p.Dir, err = os.MkdirTemp("", "faultline-pg-"); err != nil {
			return nil, err
		}
		p.temp = true
	}
	if p.Port == 0 {
		if p.Port, err = freePort(); err != nil {
			return nil, err
		}
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New(`PostgreSQL refuses to run as root and there is no "postgres" user to run it as`)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(p.Dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(p.Dir, "data")
	p.PIDFile = filepath.Join(data, "postmaster.pid")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "shop", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if p.Listen != "127.0.0.1" && p.Listen != "localhost" {
		// initdb trusts loopback alone; a server for the pods of a demo
		// shop trusts its network too (no password: a demo, not a bank).
		if err := appendFile(filepath.Join(data, "pg_hba.conf"), "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n"); err != nil {
			p.cleanup()
			return nil, err
		}
	}
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(p.Port), "-k", p.Dir,
		"-c", "listen_addresses="+p.Listen, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections="+strconv.Itoa(p.MaxConnections), "-c", "shared_buffers=32MB")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cfg.Log != nil {
		p.cmd.Stdout, p.cmd.Stderr = cfg.Log, cfg.Log
	}
	if err := p.cmd.Start(); err != nil {
		p.cleanup()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// URL is the address of database db.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://shop@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Addr is HOST:PORT of the server.
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)) }

// PID is the postmaster's process id.
func (p *Postgres) PID() int { return p.cmd.Process.Pid }

func (p *Postgres) waitReady(ctx context.Context, limit time.Duration) error {
	db, err := sql.Open("pgx", p.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err = db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited before it was ready: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %w", limit, err)
		}
	}
}

// CreateDatabase creates database name, dropping it first if it exists.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	db, err := sql.Open("pgx", p.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	q := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+q+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "CREATE DATABASE "+q)
	return err
}

// Stop shuts the server down fast (SIGINT; SIGKILL after 10 s) and
// removes a temporary directory.
func (p *Postgres) Stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) // in case a fault left it stopped
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	p.cleanup()
}

func (p *Postgres) cleanup() {
	if p.temp {
		_ = os.RemoveAll(p.Dir)
	}
}

func appendFile(name, text string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freePort() (int, error) { return freeport.Get() }
