#!/usr/bin/python3
"""A small interpreter of the GRUB script subset overlay/grub/grub.cfg uses, to evaluate the boot
decision for given environment files without booting (ab-update.md allows "a small interpreter
of the subset we use"). It implements: words with '...' and "..." quoting and $var / ${var}
expansion; if/elif/else/fi; function NAME { }; menuentry "title" { } (the default entry is
then run to record `linux` and `initrd`); and the commands set, [ ] / test (-n -z = != -eq -gt
-lt), regexp [--set=N:var], load_env -f FILE [VAR...], save_env -f FILE VAR..., return, true,
false, insmod, echo. load_env and save_env act on a dict of ESP files like GRUB does: a block
that does not parse is refused, save_env rewrites the block in place (same 1024 bytes).
"""
import re
import sys

HEADER = b"# GRUB Environment Block\n"


# ---- environment blocks (the same format as lib/ballast/boot/grubenv.cpp) -----------------------

def env_parse(block: bytes):
    if len(block) != 1024 or not block.startswith(HEADER):
        return None
    out, i = [], len(HEADER)
    while i < len(block):
        if block[i:i + 1] == b"#":
            if any(c not in b"#\n" for c in block[i:]):
                return None
            break
        eq, nl = block.find(b"=", i), block.find(b"\n", i)
        if eq < 0 or (0 <= nl < eq):
            return None
        key, j, val, ended = block[i:eq].decode(), eq + 1, bytearray(), False
        while j < len(block):
            c = block[j:j + 1]
            if c == b"\\" and j + 1 < len(block):
                val += block[j + 1:j + 2]
                j += 2
                continue
            if c == b"\n":
                ended, j = True, j + 1
                break
            val += c
            j += 1
        if not ended:
            return None
        out.append([key, val.decode()])
        i = j
    return out


def env_serialize(pairs):
    out = bytearray(HEADER)
    for k, v in pairs:
        out += k.encode() + b"="
        for ch in v.encode():
            if ch in (0x5C, 0x0A):
                out += b"\\"
            out.append(ch)
        out += b"\n"
    if len(out) > 1024:
        return None
    return bytes(out + b"#" * (1024 - len(out)))


# ---- lexer -------------------------------------------------------------------------------

class Word:
    def __init__(self):
        self.parts = []  # (text, expand)

    def literal(self):
        return "".join(t for t, _ in self.parts)

    def is_plain(self, s):
        return len(self.parts) == 1 and self.parts[0] == (s, True)


SEP = object()


def lex(text):
    toks, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c in "\n;":
            toks.append(SEP)
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c == "\\" and i + 1 < n and text[i + 1] == "\n":
            i += 2
            continue
        w = Word()
        while i < n and text[i] not in " \t\n;":
            c = text[i]
            if c == "'":
                j = text.index("'", i + 1)
                w.parts.append((text[i + 1:j], False))
                i = j + 1
            elif c == '"':
                j, buf = i + 1, ""
                while text[j] != '"':
                    if text[j] == "\\" and text[j + 1] in '"\\$':
                        buf += text[j + 1]
                        j += 2
                        continue
                    buf += text[j]
                    j += 1
                w.parts.append((buf, True))
                i = j + 1
            elif c == "\\" and i + 1 < n:
                w.parts.append((text[i + 1], False))
                i += 2
            else:
                j = i
                while j < n and text[j] not in " \t\n;'\"\\":
                    j += 1
                w.parts.append((text[i:j], True))
                i = j
        toks.append(w)
    return toks


# ---- parser ------------------------------------------------------------------------------

class Parser:
    def __init__(self, toks):
        self.t, self.p = toks, 0

    def peek(self):
        return self.t[self.p] if self.p < len(self.t) else None

    def skip_seps(self):
        while self.peek() is SEP:
            self.p += 1

    def at_kw(self, *kws):
        w = self.peek()
        return isinstance(w, Word) and any(w.is_plain(k) for k in kws)

    def expect(self, kw):
        self.skip_seps()
        if not self.at_kw(kw):
            raise SyntaxError(f"expected {kw}")
        self.p += 1

    def parse_list(self, stops):
        out = []
        while True:
            self.skip_seps()
            if self.peek() is None or self.at_kw(*stops):
                return out
            out.append(self.parse_stmt())

    def parse_stmt(self):
        if self.at_kw("if"):
            self.p += 1
            branches = []
            cond = self.parse_list(("then",))
            self.expect("then")
            body = self.parse_list(("elif", "else", "fi"))
            branches.append((cond, body))
            while self.at_kw("elif"):
                self.p += 1
                cond = self.parse_list(("then",))
                self.expect("then")
                body = self.parse_list(("elif", "else", "fi"))
                branches.append((cond, body))
            els = []
            if self.at_kw("else"):
                self.p += 1
                els = self.parse_list(("fi",))
            self.expect("fi")
            return ("if", branches, els)
        if self.at_kw("function"):
            self.p += 1
            name = self.peek().literal()
            self.p += 1
            self.expect("{")
            body = self.parse_list(("}",))
            self.expect("}")
            return ("function", name, body)
        if self.at_kw("menuentry"):
            self.p += 1
            args = []
            while not self.at_kw("{"):
                args.append(self.peek())
                self.p += 1
            self.p += 1
            body = self.parse_list(("}",))
            self.expect("}")
            return ("menuentry", args, body)
        words = []
        while self.peek() is not None and self.peek() is not SEP:
            words.append(self.peek())
            self.p += 1
        return ("cmd", words)


# ---- interpreter -------------------------------------------------------------------------

class Return(Exception):
    pass


class Grub:
    def __init__(self, files, root="hd0,gpt1"):
        self.files = files          # ESP path -> bytes
        self.vars = {"root": root}
        self.funcs = {}
        self.menu = []
        self.args = []
        self.log = []

    def expand(self, word):
        out = ""
        for text, exp in word.parts:
            if not exp:
                out += text
                continue
            def sub(m):
                name = m.group(1) or m.group(2)
                if name.isdigit():
                    k = int(name)
                    return self.args[k - 1] if 0 < k <= len(self.args) else ""
                return self.vars.get(name, "")
            out += re.sub(r"\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)", sub, text)
        return out

    def path(self, p):
        m = re.match(r"^\([^)]*\)(/.*)$", p)
        return m.group(1) if m else p

    def run_list(self, stmts):
        rc = 0
        for s in stmts:
            rc = self.run(s)
        return rc

    def run(self, s):
        kind = s[0]
        if kind == "if":
            for cond, body in s[1]:
                if self.run_list(cond) == 0:
                    return self.run_list(body)
            return self.run_list(s[2])
        if kind == "function":
            self.funcs[s[1]] = s[2]
            return 0
        if kind == "menuentry":
            self.menu.append(([self.expand(w) for w in s[1]], s[2]))
            return 0
        argv = [self.expand(w) for w in s[1]]
        if not argv:
            return 0
        return self.command(argv)

    def command(self, argv):
        name, a = argv[0], argv[1:]
        if name in self.funcs:
            saved, self.args = self.args, a
            try:
                self.run_list(self.funcs[name])
            except Return:
                pass
            finally:
                self.args = saved
            return 0
        if name == "set":
            k, _, v = a[0].partition("=")
            self.vars[k] = v
            return 0
        if name in ("[", "test"):
            if name == "[":
                a = a[:-1]
            return 0 if self.test(a) else 1
        if name == "regexp":
            sets = []
            while a and a[0].startswith("--set="):
                sets.append(a.pop(0)[len("--set="):])
            m = re.search(a[0], a[1])
            if not m:
                return 1
            for spec in sets:
                idx, _, var = spec.partition(":")
                self.vars[var] = m.group(int(idx)) or ""
            return 0
        if name == "load_env":
            f = self.path(a[1])
            names = a[2:]
            pairs = env_parse(self.files.get(f, b""))
            if pairs is None:
                self.log.append(f"load_env {f}: invalid environment block")
                return 1
            for k, v in pairs:
                if not names or k in names:
                    self.vars[k] = v
            return 0
        if name == "save_env":
            f = self.path(a[1])
            pairs = env_parse(self.files.get(f, b""))
            if pairs is None:
                self.log.append(f"save_env {f}: invalid environment block")
                return 1
            for var in a[2:]:
                for p in pairs:
                    if p[0] == var:
                        p[1] = self.vars.get(var, "")
                        break
                else:
                    pairs.append([var, self.vars.get(var, "")])
            block = env_serialize(pairs)
            if block is None:
                return 1
            self.files[f] = block
            self.log.append(f"save_env {f} {' '.join(a[2:])}")
            return 0
        if name == "return":
            raise Return()
        if name in ("true", "insmod", "echo"):
            return 0
        if name == "false":
            return 1
        if name in ("linux", "initrd"):
            self.vars["__" + name] = " ".join(a)
            return 0
        raise RuntimeError(f"grubsim: unsupported command {name}")

    def test(self, a):
        if len(a) == 2 and a[0] == "-n":
            return a[1] != ""
        if len(a) == 2 and a[0] == "-z":
            return a[1] == ""
        if len(a) == 3:
            x, op, y = a
            if op == "=":
                return x == y
            if op == "!=":
                return x != y
            if op in ("-eq", "-gt", "-lt"):
                xi, yi = int(x or 0), int(y or 0)
                return {"-eq": xi == yi, "-gt": xi > yi, "-lt": xi < yi}[op]
        raise RuntimeError(f"grubsim: unsupported test {a}")


def compile_cfg(cfg_text):
    return Parser(lex(cfg_text)).parse_list(())


def boot(cfg, files, root="hd0,gpt1", entry=None):
    """Runs grub.cfg (text, or compile_cfg()'s result), then the default menu entry (or the one
    whose title starts with `entry`, as a person picks it). Returns (grub, linux_args); `files`
    is updated by save_env."""
    g = Grub(files, root)
    g.run_list(compile_cfg(cfg) if isinstance(cfg, str) else cfg)
    if not g.menu:
        raise RuntimeError("no menu entry")
    if entry is None:
        chosen = g.menu[int(g.vars.get("default", "0") or 0)]
    else:
        chosen = next(m for m in g.menu if m[0][0].startswith(entry))
    g.run_list(chosen[1])
    return g, g.vars.get("__linux", "")


if __name__ == "__main__":
    # grubsim.py GRUB_CFG ENV1 ENV2: prints the kernel command line GRUB would start.
    cfg, e1, e2 = sys.argv[1:4]
    files = {"/grub/env1/grubenv": open(e1, "rb").read(), "/grub/env2/grubenv": open(e2, "rb").read()}
    g, linux = boot(open(cfg).read(), files)
    print(linux)
