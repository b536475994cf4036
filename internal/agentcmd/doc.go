// Package agentcmd is credlet-agent's command line: it parses flags (each
// also read from CREDLET_<FLAG> in the environment), builds the components
// (lease manager, sources, store, file sink, socket, notify, audit, metrics)
// and runs them under one errgroup. agent/main.go only calls Main.
package agentcmd
