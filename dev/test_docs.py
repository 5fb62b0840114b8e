"""CPU tests of the documents a reader opens first: README.md and dev/results/.
  python3 dev/test_docs.py
Checks that the README stays short, that every path it links or names in its layout exists, that every
measured number in it sits next to a link to its log and to the script that wrote it, and that every
results folder has its README, the files that README's table lists, and a run.sh that bash can parse;
that `make clean` removes every binary the Makefile builds and `make train` builds what `make data` does.
"""
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from checks import Checks, table_cells  # noqa: E402

CHECKS = Checks("docs")
check = CHECKS.check

README_MAX_BYTES = 12 * 1024   # issue 17: the README is the page a user needs, at most about 12 KB
# a measurement: a number with a unit, or a decimal number in a table cell
MEASURED = re.compile(r"\d[\d,]*(\.\d+)?\s*(ms|GiB|MiB|tokens/s|tok/s|TFLOP/s|passed|%)(?![A-Za-z])|\|\s*\d+\.\d+\s*\|")
LINK = re.compile(r"\]\(([^)#\s]+)\)")
RESULTS_PATH = re.compile(r"dev/results/[A-Za-z0-9_./*-]+")


def sections(text):
    """{heading: body} for the '## ' sections of a markdown text."""
    out, name = {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            out[name] = []
        else:
            out.setdefault(name, []).append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def blocks(text):
    """The text's paragraphs, tables and code blocks: runs of lines between blank lines."""
    return [b for b in re.split(r"\n\s*\n", text) if b.strip()]


def linked_results(block):
    """The dev/results paths a block links or names."""
    return set(LINK.findall(block)) | set(RESULTS_PATH.findall(block))


def path_exists(rel):
    """A repository path exists (a glob counts when it matches something)."""
    full = os.path.join(ROOT, rel)
    return bool(glob.glob(full)) if "*" in rel else os.path.exists(full)


def check_readme():
    path = os.path.join(ROOT, "README.md")
    text = open(path, encoding="utf-8").read()
    size = len(text.encode("utf-8"))
    check("README.md is at most 12 KB", size <= README_MAX_BYTES, f"{size} bytes (max {README_MAX_BYTES})")

    links = sorted(set(LINK.findall(text)) | set(RESULTS_PATH.findall(text)))
    missing = [p for p in links if not p.startswith("http") and not path_exists(p.rstrip("/"))]
    check("every path the README links exists", not missing and links, f"{len(links)} paths; missing: {missing}")

    # every block with a measured number, together with the block before it (a table's caption), must
    # point to a log in dev/results and to the run.sh that wrote it
    bs = blocks(text)
    unsourced = []
    for i, b in enumerate(bs):
        if not MEASURED.search(b):
            continue
        near = linked_results(b) | (linked_results(bs[i - 1]) if i else set())
        near = {p for p in near if p.startswith("dev/results/")}
        has_log = any(not p.endswith("run.sh") and p != "dev/results/README.md" for p in near)
        has_script = any(p.endswith("/run.sh") for p in near)
        if not (has_log and has_script):
            unsourced.append(b.strip().splitlines()[0][:70])
    check("every measured number in the README links its log and its script", not unsourced,
          f"blocks without both: {unsourced}" if unsourced else "all sourced")

    layout = sections(text).get("Layout", "")
    named, absent = 0, []
    for row in layout.splitlines():
        cells = table_cells(row)
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        base = cells[0].strip("`")
        names = [base] + re.findall(r"`([A-Za-z0-9_./-]+\.[A-Za-z0-9]+|[A-Za-z0-9_./-]+/)`", cells[1])
        for n in names:
            named += 1
            if not (path_exists(n) or (base.endswith("/") and path_exists(base + n))):
                absent.append(n)
    check("every file the README's layout names exists", named > 10 and not absent,
          f"{named} names; missing: {absent}")

    for heading in ("What is checked before a run starts", "Several GPUs"):
        check(f"the README has the section '{heading}'", heading in sections(text), heading)


def listed_files(readme_text):
    """The file names a results README lists: backticked names in its table rows' first cell, or at the
    start of its bullets."""
    names = []
    for line in readme_text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.strip("|").split("|")[0]
        elif line.startswith("- `"):
            first = line.split(":")[0]
        else:
            continue
        names += re.findall(r"`([A-Za-z0-9_.*/-]+\.[A-Za-z0-9*]+)`", first)
    return names


def check_results():
    res = os.path.join(ROOT, "dev", "results")
    index = open(os.path.join(res, "README.md"), encoding="utf-8").read()
    folders = sorted(d for d in os.listdir(res) if os.path.isdir(os.path.join(res, d)))
    check("dev/results has topic folders", folders, f"{len(folders)} folders")
    for sh in [os.path.join(res, "run_lib.sh")]:
        p = subprocess.run(["bash", "-n", sh], capture_output=True, text=True)
        check("dev/results/run_lib.sh parses", p.returncode == 0, p.stderr.strip() or "bash -n ok")
    for d in folders:
        folder = os.path.join(res, d)
        check(f"dev/results/README.md indexes {d}", f"]({d}/)" in index and f"]({d}/run.sh)" in index,
              "folder and script linked")
        readme = os.path.join(folder, "README.md")
        check(f"{d} has a README.md", os.path.exists(readme), readme)
        run = os.path.join(folder, "run.sh")
        p = subprocess.run(["bash", "-n", run], capture_output=True, text=True) if os.path.exists(run) else None
        check(f"{d} has a run.sh that parses", p is not None and p.returncode == 0,
              "missing" if p is None else (p.stderr.strip() or "bash -n ok"))
        if not os.path.exists(readme):
            continue
        names = listed_files(open(readme, encoding="utf-8").read())
        absent = [n for n in names if not glob.glob(os.path.join(folder, n))]
        check(f"every file {d}/README.md lists exists", names and not absent,
              f"{len(names)} listed; missing: {absent}")


def check_makefile_clean():
    """make clean removes every binary make builds: every rule whose recipe runs $(NVCC) builds a target
    listed in BINARIES, which `all` builds and `clean` removes."""
    text = open(os.path.join(ROOT, "Makefile"), encoding="utf-8").read().replace("\\\n", " ")
    m = re.search(r"^BINARIES\s*=(.*)$", text, re.M)
    binaries = set(m.group(1).split()) if m else set()
    built, rule = set(), None
    for line in text.splitlines():
        if line.startswith("\t"):
            if rule and "$(NVCC)" in line:
                built |= rule
        else:
            r = re.match(r"^([^\s:#=][^:=]*?)\s*:(?!=)", line)
            rule = set(r.group(1).split()) if r else None
    check("every binary the Makefile builds is in BINARIES", built and built <= binaries,
          f"built by nvcc: {sorted(built)}; not in BINARIES: {sorted(built - binaries)}")
    check("all builds and clean removes BINARIES",
          re.search(r"^all:\s*\$\(BINARIES\)\s*$", text, re.M) and
          re.search(r"^clean:\s*\n\trm -f \$\(BINARIES\)\s*$", text, re.M), "the all and clean rules")


def check_make_train_data():
    """make train builds what make data builds (the README: it runs make data if needed): the prerequisites
    of `train` in make's own database include every one of `data`."""
    p = subprocess.run(["make", "-pRrq", "-f", "Makefile", ":"], cwd=ROOT, capture_output=True, text=True)
    rules = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(train|data):(?!=)(.*)$", line)
        if m:
            rules[m.group(1)] = set(m.group(2).split())
    data, train = rules.get("data", set()), rules.get("train", set())
    check("make train builds every file of make data", data and data <= train,
          f"data: {sorted(data)}; missing from train: {sorted(data - train)}")


def check_log_rows():
    """Every row train_parallax writes to log.csv has the columns of its header (LOG_HEADER): a short row
    leaves the last columns (eval_correct) missing for every csv reader."""
    text = open(os.path.join(ROOT, "train_parallax.cu"), encoding="utf-8").read()
    m = re.search(r'LOG_HEADER = "([^"]*)\\n"', text)
    want = m.group(1).count(",") + 1 if m else 0
    rows = re.findall(r'fprintf\(log, "([^"]*)\\n"', text)
    bad = [r for r in rows if r.count(",") + 1 != want]
    check("every log.csv row train_parallax writes has the header's columns", want and len(rows) >= 8 and not bad,
          f"{len(rows)} rows of {want} columns; wrong: {bad}")


def main():
    check_readme()
    check_results()
    check_makefile_clean()
    check_make_train_data()
    check_log_rows()
    CHECKS.exit()


if __name__ == "__main__":
    main()
