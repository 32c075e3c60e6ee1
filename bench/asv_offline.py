"""Make a published asv dashboard work offline: ``python bench/asv_offline.py HTML_DIR``.

asv's ``index.html`` loads jQuery, Flot, Bootstrap and three small plugins from CDNs; where
those are unreachable (this project's CI machine) the page shows "Can not determine
continental origin of swallow" and no graph. This copies ``asv_benchmarks/vendor/`` (the
same versions, see its README) to ``HTML_DIR/vendor/`` and rewrites every CDN ``<script>``
/ ``<link>`` of the HTML files there to the local copy (dropping the CDN's integrity
hashes, which belong to the CDN's minified builds). A reference it has no copy for is an error.
"""
import glob
import os
import re
import shutil
import sys

VENDOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "asv_benchmarks", "vendor")

#: CDN file name -> vendored file
FILES = {
    "jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "jquery.flot.min.js": "jquery.flot.js",
    "jquery.flot.time.min.js": "jquery.flot.time.js",
    "jquery.flot.selection.min.js": "jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupidtable.min.js",
    "md5.min.js": "md5.min.js",
    "bootstrap.min.js": "bootstrap.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
}

_TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"[^>]*>", re.S)
_DROP = re.compile(r"\s(?:integrity|crossorigin|referrerpolicy)=\"[^\"]*\"")


def rewrite(html):
    """``html`` with its CDN references pointed at ``vendor/``; raises on an unknown one."""

    def local(match):
        tag, url = match.group(0), match.group(2)
        if match.group(1) == "link" and "stylesheet" not in tag:
            return tag  # e.g. the project's own links
        name = url.rsplit("/", 1)[-1]
        if name not in FILES:
            raise ValueError(f"asv_offline: no vendored copy of {url}")
        return _DROP.sub("", tag.replace(url, f"vendor/{FILES[name]}"))

    return _TAG.sub(local, html)


def make_offline(html_dir):
    """Copy the vendored files into ``html_dir`` and rewrite its HTML pages; returns them."""
    shutil.copytree(VENDOR, os.path.join(html_dir, "vendor"), dirs_exist_ok=True)
    pages = sorted(glob.glob(os.path.join(html_dir, "*.html")))
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        new = rewrite(text)
        if new != text:
            with open(page, "w", encoding="utf-8") as f:
                f.write(new)
    return pages


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for page in make_offline(sys.argv[1]):
        print(f"offline: {page}")
