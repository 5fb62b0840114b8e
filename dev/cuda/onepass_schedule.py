# A schedule model of the one-pass attention backward (version 8, dev/cuda/NOTES.md, session 17), to choose the
# order in which key blocks add their shares of dq before any GPU time is spent on it. Pure Python, no GPU:
#   python3 dev/cuda/onepass_schedule.py
# Model: per sequence-head, key block kt (64 keys) visits query tiles 2kt..nqt-1 (32 queries each), one time
# unit per tile. Its share of query tile qi is added after the share of the block before it in the adding
# order (ascending: kt - 1; descending: kt + 1); the add takes 0.1 units and the compute may run `depth` tiles
# ahead of its adds (staging buffers). Blocks take the first free slot (an SM's block slot) in launch order:
# "longest" is block_rank's (key block 0 of every sequence-head first), "shortest" the reverse. The output is
# the time to finish against the ideal (all tile work spread evenly over the slots); "none" has no adding
# order at all (version 3's dk/dv pass), the floor the others are held to. "v8" is version 8 as written: its
# thread 0 waits in line for each tile (the block stops there: depth 1) and announces a tile's add only when it
# reaches the next tile (one unit late).
import heapq


def simulate(n_bh, T, slots, order, launch, depth):
    nqt, nkb = (T + 31) // 32, (T + 63) // 64
    ranks = range(nkb) if launch == "longest" else reversed(range(nkb))
    blocks = [(bh, kt) for kt in ranks for bh in range(n_bh)]
    added = {}   # (bh, kt, qi) -> when that share had been added
    free = [0.0] * slots
    end = busy = 0.0
    for bh, kt in blocks:   # dependencies point only to blocks launched earlier: process in launch order
        t = heapq.heappop(free)
        done = []
        tiles = list(range(2 * kt, nqt))
        for i, qi in enumerate(tiles):
            if i >= depth:
                t = max(t, done[i - depth])
            t += 1.0
            busy += 1.0
            pred = {"asc": kt - 1, "desc": kt + 1, "v8": kt - 1}.get(order, -1)
            ready = 0.0
            if 0 <= pred <= qi // 2:
                if (bh, pred, qi) not in added:
                    raise RuntimeError("deadlock: a block waits for one launched after it")
                ready = added[(bh, pred, qi)]
            if order == "v8":   # the block waits for its turn in line; the add is announced a tile later
                t = max(t, ready)
                if i > 0:
                    added[(bh, kt, tiles[i - 1])] = t
                done.append(t)
            else:
                added[(bh, kt, qi)] = max(t, ready) + 0.1
                done.append(added[(bh, kt, qi)])
        if order == "v8":
            t += 0.1
            added[(bh, kt, tiles[-1])] = t
            done[-1] = t
        finish = max(t, done[-1])
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end, busy / slots


def main():
    shapes = [("16x1024x12, 3 blocks/SM", 16 * 12, 1024, 3 * 132), ("4x4096x12, 3 blocks/SM", 48, 4096, 3 * 132),
              ("4x4096x12, 2 blocks/SM", 48, 4096, 2 * 132), ("8x2048x8, 1 block/SM", 64, 2048, 132)]
    print("shape                    adding order  launch    depth  time / ideal")
    for name, n_bh, T, slots in shapes:
        for order, launch in [("none", "longest"), ("asc", "longest"), ("desc", "shortest"), ("v8", "longest")]:
            for depth in ((1,) if order == "v8" else (1, 2)):
                end, ideal = simulate(n_bh, T, slots, order, launch, depth)
                print(f"{name:24s} {order:12s}  {launch:8s}  {depth:5d}  {end / ideal:.3f}")


if __name__ == "__main__":
    main()
