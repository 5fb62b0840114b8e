# Lists the per-kernel sections of a cubin (machine code .text.*, and with --all also .nv.info.*,
# .nv.shared.*, .nv.constant0.*): sha1 of the bytes, size, name. Two lists that agree show a refactor left
# the kernels' machine code byte-identical, on a machine without cuobjdump:
#   nvcc -O3 -std=c++17 -lineinfo -gencode arch=compute_90a,code=sm_90a -cubin -o new.cubin train_parallax.cu
#   python3 dev/cuda/cubin_sections.py new.cubin attention > new.txt    (the same for the old tree), diff
# (.nv.info differs whenever the set of kernels changes: it holds symbol indices.)
import hashlib
import struct
import sys


def sections(path):
    data = open(path, 'rb').read()
    if data[:4] != b'\x7fELF' or data[4] != 2:
        sys.exit('cubin_sections: %s is not a 64-bit ELF file (a cubin)' % path)
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3A)
    heads = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize) for i in range(shnum)]
    names = heads[shstrndx][4]
    for h in heads:
        name = data[names + h[0]:data.index(b'\0', names + h[0])].decode()
        body = b'' if h[1] == 8 else data[h[4]:h[4] + h[5]]   # SHT_NOBITS (shared memory): the size only
        yield name, h[5], body


def main():
    args = [a for a in sys.argv[1:] if a != '--all']
    if len(args) not in (1, 2):
        sys.exit('usage: cubin_sections.py CUBIN [NAME_PART] [--all]')
    kinds = ('.text.', '.nv.info.', '.nv.shared.', '.nv.constant0.') if '--all' in sys.argv else ('.text.',)
    part = args[1] if len(args) == 2 else ''
    rows = [(name, size, body) for name, size, body in sections(args[0])
            if name.startswith(kinds) and part in name]
    for name, size, body in sorted(rows):
        print(hashlib.sha1(body).hexdigest()[:16], size, name)


if __name__ == '__main__':
    main()
