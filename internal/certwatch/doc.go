// Package certwatch owns the injector's serving certificate: it loads a
// certificate and key from files, serves them through GetCertificate, and
// reloads them when they change without dropping a connection.
//
// Changes are seen two ways, like controller-runtime's certwatcher: fsnotify
// on the files' directories (which catches a mounted Secret's "..data"
// symlink swap as well as a plain rewrite), and a slow poll that compares
// contents, for filesystems where events are lost. A pair that fails to load
// (a half-written update) keeps the previous certificate in service.
package certwatch
