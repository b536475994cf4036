// Package images writes container images made from files on the host, most
// often static Go binaries, as one docker-archive tarball (the format of
// `docker save`, which `ctr images import` and `kind load image-archive`
// read). No registry, no Dockerfile and no base image are involved: each
// image is a single layer holding exactly the files it lists, so an image
// with no shell in its list has no shell.
package images
