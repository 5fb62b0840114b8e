# Work per block of a persistent attention forward whose blocks claim work items k ahead (session 8): items in
# block_rank's order (64 sequence-heads at a time, the longest query tiles first; item length = key tiles), each
# block holding k claimed items and claiming one more whenever it finishes one. k = 1 is claiming on demand, what
# the hardware's block scheduler does for a non-persistent grid. Prints max and mean work per block (key tiles,
# plus 0.3 per item for its start); max / mean - 1 is the time lost to the imbalance.
#   python3 dev/results/2026-11-28_session8/claim_model.py
import heapq


def items(nq, bh, group=64):
    out = []
    for g0 in range(0, bh, group):
        for rank in range(nq):
            out += [nq - rank] * min(group, bh - g0)
    return out


def claim_ahead(nq, bh, blocks, k, start_cost=0.3):
    work, pos = items(nq, bh), 0
    queues = []
    for b in range(blocks):
        queues.append(work[pos:pos + k])
        pos += len(queues[-1])
    events = [(q[0] + start_cost, b) for b, q in enumerate(queues) if q]
    heapq.heapify(events)
    end = [0.0] * blocks
    while events:
        t, b = heapq.heappop(events)
        queues[b].pop(0)
        if pos < len(work):
            queues[b].append(work[pos])
            pos += 1
        if queues[b]:
            heapq.heappush(events, (t + queues[b][0] + start_cost, b))
        else:
            end[b] = t
    return max(end), sum(end) / blocks


for name, nq, bh, blocks in [("16x1024x12 Parallax (2 blocks/SM)", 16, 192, 264),
                             ("16x1024x12 softmax (4 blocks/SM)", 16, 192, 528),
                             ("4x4096x12 Parallax", 64, 48, 264),
                             ("32x1024x12 Parallax", 16, 384, 264)]:
    print(name, "  ".join("k=%d: %.1f/%.1f" % ((k,) + claim_ahead(nq, bh, blocks, k)) for k in (1, 2, 3)))
