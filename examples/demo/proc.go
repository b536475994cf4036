package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the demo runs, with its output kept line by line so
// the demo can wait for what it is expected to print.
type child struct {
	name string
	cmd  *exec.Cmd
	log  io.Writer // every line also goes here (a file in the work dir)
	show func(line string) bool

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	done    chan struct{} // closed when the process has exited
	cursor  int           // first line expect has not consumed
	exitErr error
}

// start runs the command; its stdout and stderr are collected.
func start(d *demo, name string, cmd *exec.Cmd, show func(string) bool) (*child, error) {
	f, err := os.Create(d.path(name + ".log"))
	if err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, log: f, show: show, changed: make(chan struct{}), done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the demo
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		readers.Wait()
		f.Close()
		c.mu.Lock()
		c.exitErr = err
		c.mu.Unlock()
		close(c.done)
	}()
	d.children = append(d.children, c)
	return c, nil
}

func (c *child) add(line string) {
	fmt.Fprintln(c.log, line)
	if c.show != nil && c.show(line) {
		fmt.Printf("      %s | %s\n", c.name, line)
	}
	c.mu.Lock()
	c.lines = append(c.lines, line)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// expect waits for a line containing want, after the lines earlier
// expects consumed, and prints it.
func (c *child) expect(ctx context.Context, want string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		line, ok, ch := c.find(want)
		if ok {
			return line, nil
		}
		select {
		case <-ch:
		case <-c.done: // every line is in by now: one last look
			if line, ok, _ := c.find(want); ok {
				return line, nil
			}
			return "", fmt.Errorf("%s exited (%v) before printing %q", c.name, c.exitErr, want)
		case <-ctx.Done():
			return "", fmt.Errorf("%s did not print %q within %s", c.name, want, timeout)
		}
	}
}

// find consumes lines up to the first containing want.
func (c *child) find(want string) (string, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := c.cursor; i < len(c.lines); i++ {
		if strings.Contains(c.lines[i], want) {
			c.cursor = i + 1
			if c.show == nil || !c.show(c.lines[i]) {
				fmt.Printf("      %s | %s\n", c.name, c.lines[i])
			}
			return c.lines[i], true, nil
		}
	}
	return "", false, c.changed
}

// output returns everything the process printed so far.
func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// stop sends SIGTERM and waits up to 10 s, then kills.
func (c *child) stop() error {
	select {
	case <-c.done:
		return c.exitErr
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within 10s of SIGTERM; killed", c.name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exitErr
}
