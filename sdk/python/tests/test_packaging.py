"""The package installs with pip from its folder, offline, and stays
Python 3.9 syntax."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Packaging(unittest.TestCase):
    def test_pip_install_offline(self) -> None:
        # `pip install ./sdk/python` with no index: the in-tree backend
        # needs nothing from one. The installed copy imports from elsewhere
        # and carries py.typed.
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            msg = "pip is missing for %s: the install test needs it (Debian: apt-get install python3-pip)" % sys.executable
            if os.environ.get("CI"):
                self.fail(msg)
            self.skipTest(msg)
        with tempfile.TemporaryDirectory() as target:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
                 "--disable-pip-version-check", "--target", target, ROOT],
                capture_output=True, text=True, timeout=120, cwd=target,
            )
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            check = subprocess.run(
                [sys.executable, "-I", "-c",
                 "import sys; sys.path.insert(0, %r)\n"
                 "import credlet, credlet.aio, os\n"
                 "d = os.path.dirname(credlet.__file__)\n"
                 "print(d); print(os.path.exists(os.path.join(d, 'py.typed'))); print(credlet.__version__)" % target],
                capture_output=True, text=True, timeout=60, cwd="/",
            )
            self.assertEqual(check.returncode, 0, check.stderr)
            where, typed, version = check.stdout.split()
            self.assertEqual(where, os.path.join(target, "credlet"))
            self.assertEqual(typed, "True")
            self.assertEqual(version, "0.2.0")
            dist = os.path.join(target, "credlet-0.2.0.dist-info")
            with open(os.path.join(dist, "METADATA")) as f:
                meta = f.read()
            self.assertIn("Requires-Python: >=3.9", meta)
            self.assertNotIn("Requires-Dist", meta, "the package has no dependencies")
        self.assertFalse(os.path.exists(os.path.join(ROOT, "build")), "the build wrote into the source folder")

    def test_python39_syntax(self) -> None:
        for folder in ("credlet", "_build", "tests"):
            for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
                for fn in files:
                    if fn.endswith(".py"):
                        path = os.path.join(dirpath, fn)
                        with open(path, encoding="utf-8") as f:
                            src = f.read()
                        try:
                            ast.parse(src, path, feature_version=(3, 9))
                        except SyntaxError as e:
                            self.fail("%s is not Python 3.9 syntax: %s" % (path, e))
                        if folder == "credlet":
                            self.assertIn("from __future__ import annotations", src, path)


if __name__ == "__main__":
    unittest.main()
