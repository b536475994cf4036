// Package injectorcmd owns credlet-injector's command line: flags, logging,
// and the wiring of the certificate watcher, the admission server and the
// metrics server under one errgroup. injector/main.go only calls Main.
package injectorcmd
