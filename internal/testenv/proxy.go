package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a loopback TCP proxy for outage tests: clients connect to Addr
// and are forwarded to the target. Cut drops every live connection and
// refuses new ones until Restore. The listener stays bound throughout, so the
// address clients were given stays valid; a refused client is accepted and
// reset at once, so it sees "connection reset" or EOF, not ECONNREFUSED.
// SetLatency makes the target slow: every chunk of its answers is held back.
type Proxy struct {
	Addr string // 127.0.0.1:PORT

	target  string
	ln      net.Listener
	latency atomic.Int64 // time.Duration added to each chunk from the target

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartProxy listens on a free 127.0.0.1 port and forwards each connection
// to target (host:port).
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		conns:  map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// URL returns "http://"+Addr, handy as a Vault address.
func (p *Proxy) URL() string { return "http://" + p.Addr }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: don't spin
			continue
		}
		if !p.track(c) {
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// track registers c unless the proxy is cut or closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(client)
		reset(client)
		return
	}
	if !p.track(upstream) {
		// Cut while dialing: Cut has already reset client.
		p.untrack(client)
		reset(client)
		reset(upstream)
		return
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = client.Close()
			_ = upstream.Close()
		})
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		closeBoth() // a half-close is not worth modelling here
		done <- struct{}{}
	}
	go pipe(upstream, client)
	go func() {
		p.copySlow(client, upstream)
		closeBoth()
		done <- struct{}{}
	}()
	<-done
	<-done
	p.untrack(client, upstream)
}

// copySlow copies the target's answers to the client, holding each chunk
// back by the current latency.
func (p *Proxy) copySlow(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// SetLatency holds back every chunk the target sends by d from now on (0:
// none), a slow Vault as its clients see it.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Cut resets every live connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

// Restore forwards new connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops listening, resets every connection and waits for the proxy's
// goroutines. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// reset closes c with an RST rather than a FIN, like a dropped link.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
