// Downstream evaluations on llm.c's multiple-choice files (data/eval_format.py documents the layout):
// HellaSwag (4 endings, acc_norm) and the last-word test (1 ending, the target word). Host code only: the
// reader, the rows a forward scores, and the scores from each row's loss. The trainer runs the forwards.
#pragma once
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#define EVAL_MAGIC 20240522
#define EVAL_START 65535
#define EVAL_VOCAB 50257

struct EvalExample {
    int label;
    std::vector<int> ctx;
    std::vector<std::vector<int>> ends;
};

struct EvalSet {
    std::string flag, path;
    int completions;                 // per example: 4 HellaSwag, 1 last-word
    std::vector<EvalExample> ex;
    size_t rows() const { return ex.size() * completions; }
};

// Reads and checks every field (the same checks as data/eval_format.py read_evalfile); false with *err
// naming the flag and the file.
static bool eval_file_read(EvalSet* es, const char* flag, const char* path, int completions, std::string* err) {
    es->flag = flag; es->path = path; es->completions = completions; es->ex.clear();
    std::string where = std::string(flag) + " " + path + ": ";
    FILE* f = fopen(path, "rb");
    if (!f) { *err = where + "cannot open"; return false; }
    std::vector<unsigned char> raw;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) raw.insert(raw.end(), buf, buf + n);
    int read_errno = ferror(f) ? errno : 0;   // a directory opens, and only its read fails
    fclose(f);
    auto bad = [&](const std::string& why) { *err = where + why; return false; };
    if (read_errno) return bad(std::string("read failed (") + strerror(read_errno) + ")");
    if (raw.size() < 1024) return bad(std::to_string(raw.size()) + " bytes, shorter than the 1024-byte header");
    int32_t h[4];
    for (int i = 0; i < 4; i++) h[i] = (int32_t)(raw[4 * i] | raw[4 * i + 1] << 8 | raw[4 * i + 2] << 16 | (uint32_t)raw[4 * i + 3] << 24);
    if (h[0] != EVAL_MAGIC) return bad("magic " + std::to_string(h[0]) + ", expected 20240522 (llm.c's evaluation file)");
    if (h[1] != 1) return bad("version " + std::to_string(h[1]) + ", expected 1");
    if ((raw.size() - 1024) % 2) return bad("odd number of bytes after the header");
    size_t len = (raw.size() - 1024) / 2, pos = 0;
    auto u16 = [&](size_t i) { return (int)(raw[1024 + 2 * i] | raw[1024 + 2 * i + 1] << 8); };
    for (int idx = 0; idx < h[2]; idx++) {
        std::string ex = "example " + std::to_string(idx) + ": ";
        if (pos + 6 > len) return bad(ex + "cut short (the header says " + std::to_string(h[2]) + " examples)");
        int nbytes = u16(pos + 1), label = u16(pos + 3), nc = u16(pos + 4);
        if (u16(pos) != EVAL_START) return bad(ex + "no start marker 65535");
        size_t end = pos + nbytes / 2;
        if (nbytes % 2 || nbytes > h[3] || end > len)
            return bad(ex + std::to_string(nbytes) + " bytes, beyond the file or the header's longest (" + std::to_string(h[3]) + ")");
        if (nc != completions)
            return bad(ex + std::to_string(nc) + " completions, expected " + std::to_string(completions));
        if (label >= nc) return bad(ex + "label " + std::to_string(label) + " out of range (0 to " + std::to_string(nc - 1) + ")");
        EvalExample e;
        e.label = label;
        size_t p = pos + 5;
        for (int k = 0; k <= nc; k++) {
            long m = p < end ? u16(p) : -1;
            if (m < 0 || p + 1 + m > end || m == 0)   // an empty context leaves an ending's first token unscored
                return bad(ex + "part " + std::to_string(k) + " runs past the example's " + std::to_string(nbytes) + " bytes or is empty");
            std::vector<int> part;
            for (long j = 0; j < m; j++) {
                int t = u16(p + 1 + j);
                if (t >= EVAL_VOCAB) return bad(ex + "a token >= 50257");
                part.push_back(t);
            }
            if (k == 0) e.ctx = part; else e.ends.push_back(part);
            p += 1 + m;
        }
        if (p != end) return bad(ex + std::to_string(2 * (end - p)) + " bytes left over after its completions");
        es->ex.push_back(e);
        pos = end;
    }
    if (pos != len) return bad(std::to_string(2 * (len - pos)) + " bytes after the last of " + std::to_string(h[2]) + " examples");
    if (es->ex.empty()) return bad("no examples");
    return true;
}

// Every ending fits one row of T (eval_row cuts only the context): false with *err naming the flag, the file
// and the first ending that is longer than --seq-len.
static bool eval_fits(const EvalSet& es, int T, std::string* err) {
    for (size_t i = 0; i < es.ex.size(); i++)
        for (size_t k = 0; k < es.ex[i].ends.size(); k++)
            if ((int)es.ex[i].ends[k].size() > T) {
                *err = es.flag + " " + es.path + ": example " + std::to_string(i) + ": ending " + std::to_string(k) +
                       " is " + std::to_string(es.ex[i].ends[k].size()) + " tokens, longer than --seq-len " +
                       std::to_string(T) + " (only the context is cut to fit)";
                return false;
            }
    return true;
}

// Row r = (example r / completions, ending r % completions) as one sequence of T: the last T + 1 tokens of
// context + ending (a longer one loses the start of its context), inputs the first T, targets the next T,
// -1 outside the ending (the loss mask) and in the padding. Returns the context tokens cut off.
static int eval_row(const EvalSet& es, size_t r, int T, int* inputs, int* targets) {
    const EvalExample& e = es.ex[r / es.completions];
    const std::vector<int>& end = e.ends[r % es.completions];
    std::vector<int> seq(e.ctx);
    seq.insert(seq.end(), end.begin(), end.end());
    int cut = std::max(0, (int)seq.size() - (T + 1));
    int n = (int)seq.size() - cut - 1;              // positions scored or not
    int first = n - (int)end.size();                // the first position whose target is an ending token
    for (int t = 0; t < T; t++) {
        inputs[t] = t < n ? seq[cut + t] : EVAL_VOCAB - 1;   // padding: <|endoftext|>, scored nowhere
        targets[t] = t < n && t >= first ? seq[cut + t + 1] : -1;
    }
    return cut;
}

// One row's result: the summed loss over its ending's tokens, their number, all of them greedy-correct.
struct RowScore { double loss; int tokens; bool correct; };

struct EvalScores {
    double acc;    // HellaSwag: acc_norm; last-word: every target token greedy-correct
    double loss;   // mean over examples: HellaSwag the correct ending's mean token loss; last-word the summed loss
    double ppl;    // last-word: exp(loss), the per-word perplexity; HellaSwag: 0
    std::vector<int> pred;   // per example: the ending with the lowest mean token loss (the first of a tie)
};

static EvalScores eval_scores(const EvalSet& es, const std::vector<RowScore>& rows) {
    EvalScores s = {0.0, 0.0, 0.0, {}};
    int nc = es.completions;
    for (size_t i = 0; i < es.ex.size(); i++) {
        const RowScore* r = &rows[i * nc];
        int best = 0;
        for (int k = 1; k < nc; k++)
            if (r[k].loss / r[k].tokens < r[best].loss / r[best].tokens) best = k;
        s.pred.push_back(best);
        int label = es.ex[i].label;
        s.acc += nc == 1 ? r[0].correct : best == label;
        s.loss += nc == 1 ? r[0].loss : r[label].loss / r[label].tokens;
    }
    s.acc /= es.ex.size();
    s.loss /= es.ex.size();
    s.ppl = nc == 1 ? exp(s.loss) : 0.0;
    return s;
}

// OUT/<name>_<step>.csv, one line per row: example, ending, label, the row's summed loss, tokens, all
// greedy-correct, and the example's prediction; dev/downstream_ref.py compares it with the reference's.
static bool eval_write_csv(const std::string& path, const EvalSet& es, const std::vector<RowScore>& rows,
                           const EvalScores& s) {
    FILE* f = fopen(path.c_str(), "w");
    if (!f) return false;
    fprintf(f, "example,ending,label,loss,tokens,correct,pred\n");
    for (size_t r = 0; r < rows.size(); r++)
        fprintf(f, "%zu,%zu,%d,%.6f,%d,%d,%d\n", r / es.completions, r % es.completions, es.ex[r / es.completions].label,
                rows[r].loss, rows[r].tokens, (int)rows[r].correct, s.pred[r / es.completions]);
    return fclose(f) == 0;
}
