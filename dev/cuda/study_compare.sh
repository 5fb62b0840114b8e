#!/usr/bin/env bash
# Times two builds of the attention study against each other on one GPU, interleaved, so that a drift of
# the GPU's clocks or temperature falls on both alike: for ROUNDS rounds, every case (Parallax and softmax,
# D = 64 at 16x1024x12x64 and D = 128 at 16x1024x6x128) runs OLD then NEW, in the other order every
# second round. Each run also checks its kernels against the float64 CPU reference; a failed check stops
# the comparison. Prints every run's table row, then per binary and case the median fwd and fwd+bwd ms.
#   bash dev/cuda/study_compare.sh OLD_STUDY NEW_STUDY [VERSION]      (VERSION default 3; ROUNDS=5 default)
set -u
usage() { echo "usage: study_compare.sh OLD_STUDY NEW_STUDY [VERSION]   (env ROUNDS, default 5)" >&2; exit 2; }
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
old=$1 new=$2 version=${3:-3} rounds=${ROUNDS:-5}
for bin in "$old" "$new"; do
    [ -f "$bin" ] && [ -x "$bin" ] || { echo "study_compare: $bin is not an executable file" >&2; exit 2; }
done
case "$version" in
    1|2|3|4) ;;
    *) echo "study_compare: VERSION must be 1, 2, 3 or 4, got '$version'" >&2; exit 2 ;;
esac
case "$rounds" in
    ''|*[!0-9]*|0) echo "study_compare: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2 ;;
esac

cases=("16 1024 12 64" "16 1024 12 64 --softmax" "16 1024 6 128" "16 1024 6 128 --softmax")
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT

# one run: its table row, prefixed by the binary's label; the whole output if it failed
run_one() {
    local label=$1 bin=$2 args=$3 out rc
    # shellcheck disable=SC2086  # args is one of the fixed cases above, split on purpose
    out=$("$bin" "$version" $args 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "study_compare: $label ($bin $version $args) failed with status $rc:" >&2
        echo "$out" >&2
        exit 1
    fi
    if echo "$out" | grep -q "skipped: no GPU"; then echo "study_compare: skipped: no GPU"; exit 0; fi
    echo "$out" | grep '^| \(parallax\|softmax\)' | sed "s/^/$label /" | tee -a "$rows"
}

echo "old: $old"
echo "new: $new"
echo "version $version, $rounds rounds; each row: binary | attention | kernels | B x T x H x D | fwd ms |"
echo "  fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
for ((round = 1; round <= rounds; round++)); do
    for c in "${cases[@]}"; do
        if [ $((round % 2)) -eq 1 ]; then
            run_one old "$old" "$c"; run_one new "$new" "$c"
        else
            run_one new "$new" "$c"; run_one old "$old" "$c"
        fi
    done
done

echo
echo "| binary | attention | B x T x H x D | median fwd ms | median fwd+bwd ms | runs |"
echo "|---|---|---|---|---|---|"
# fields of a row: label | attention | kernels | shape | fwd ms | fwd TFLOP/s | fwd+bwd ms | ...
for label in old new; do
    for c in "${cases[@]}"; do
        read -r b t h d flag <<< "$c"
        attn=parallax; [ -n "${flag:-}" ] && attn=softmax
        awk -F'|' -v label="$label" -v attn="$attn" -v shape="${b}x${t}x${h}x${d}" '
            BEGIN { n = 0 }
            $1 == label " " && $2 ~ attn && $4 ~ ("^ *" shape " *$") { f[n] = $5 + 0; fb[n] = $7 + 0; n++ }
            function median(a, n,   i, j, x) {
                for (i = 1; i < n; i++)
                    for (j = i; j > 0 && a[j - 1] > a[j]; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
                return n % 2 ? a[(n - 1) / 2] : (a[n / 2 - 1] + a[n / 2]) / 2
            }
            END {
                if (n) printf("| %s | %s | %s | %.3f | %.3f | %d |\n", label, attn, shape, median(f, n), median(fb, n), n)
            }
        ' "$rows"
    done
done
