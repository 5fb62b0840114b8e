// defines: Tokenizer, tokenizer_load, tokenizer_decode
// Decoding token ids for the trainer's samples, from the llm.c tokenizer file (spec section 4): a 256 int32
// header (magic 20240328, version 2, vocab size, <|endoftext|> id), then per token a uint8 length and its
// bytes. `make data` writes it to data/shards/gpt2_tokenizer.bin.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

struct Tokenizer {
    std::vector<std::string> pieces;
    int eot = 50256;
};

// Returns false with `err` naming the file and the reason.
static bool tokenizer_load(Tokenizer* tk, const char* path, std::string* err) {
    FILE* f = fopen(path, "rb");
    if (!f) { *err = std::string(path) + ": cannot open"; return false; }
    int header[256];
    if (fread(header, sizeof(int), 256, f) != 256 || header[0] != 20240328 || header[1] != 2) {
        fclose(f);
        *err = std::string(path) + ": not an llm.c tokenizer file (magic 20240328, version 2)";
        return false;
    }
    tk->eot = header[3];
    tk->pieces.resize(header[2]);
    for (int i = 0; i < header[2]; i++) {
        unsigned char len;
        char buf[256];
        if (fread(&len, 1, 1, f) != 1 || fread(buf, 1, len, f) != len) {
            fclose(f);
            *err = std::string(path) + ": truncated at token " + std::to_string(i);
            return false;
        }
        tk->pieces[i].assign(buf, len);
    }
    fclose(f);
    return true;
}

static std::string tokenizer_decode(const Tokenizer* tk, const std::vector<int>& ids) {
    std::string s;
    for (int id : ids) s += id >= 0 && id < (int)tk->pieces.size() ? tk->pieces[id] : "<?>";
    return s;
}
