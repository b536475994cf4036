#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each: make fuzz.
# Targets are discovered with `go test -list '^Fuzz' ./...` (with -short, so
# packages whose TestMain starts real servers don't start them just to list
# or fuzz). Every target runs even if one fails; the exit code is 1 if any did.
set -euo pipefail
GO=${1:-go}
FUZZTIME=${2:-60s}

list=$("$GO" test -short -list '^Fuzz' ./... 2>&1) || { echo "$list"; exit 1; }
targets=()
names=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for n in "${names[@]}"; do targets+=("$pkg $n"); done
		names=()
		;;
	*) names=() ;;
	esac
done <<<"$list"

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
echo ">> fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo ">> fuzz $pkg $name"
	if ! "$GO" test -short -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		failed+=("$pkg $name")
	fi
done
if [ ${#failed[@]} -gt 0 ]; then
	echo ">> fuzz: ${#failed[@]} of ${#targets[@]} targets FAILED:" >&2
	printf '   %s\n' "${failed[@]}" >&2
	exit 1
fi
echo ">> fuzz: all ${#targets[@]} targets passed"
