"""A small news site no profile knows, for the generic profile and the fallback chain.

``write_site(root)`` writes its pages (JSON-LD only, OpenGraph only, plain markup only, a
listing, a soft 404); :class:`SiteProxy` serves a folder as the site's host to a crawler
that uses it as ``http_proxy`` (absolute-form requests), the way tests/replica serves the
portal, so the crawl runs with the site's real URLs.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOST = "tintuc.example"
BASE = f"http://{HOST}"

_HEAD = """<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><title>{title}</title>{meta}</head>
<body>
<header class="site-header"><a href="/">Tin Tức Example</a>
<nav><a href="/the-thao/">Thể thao</a> <a href="/doi-song/">Đời sống</a> <a href="/tag/bong-da/">Bóng đá</a></nav></header>
"""
_FOOT = """<aside class="sidebar"><h3>Đọc nhiều</h3><ul><li><a href="/the-thao/doi-tuyen-thang-dam-9001.html">Đội tuyển thắng đậm</a></li>
<li><a href="/doi-song/cho-phien-vung-cao.html">Chợ phiên vùng cao</a></li></ul></aside>
<footer>© Tin Tức Example. Liên hệ: toasoan@tintuc.example</footer></body></html>
"""
_SHARE = '<div class="share-bar"><a href="https://www.facebook.com/sharer/sharer.php?u=x">Chia sẻ Facebook</a> <a href="#">In bài</a></div>'
_RELATED = ('<div class="related"><h3>Tin liên quan</h3><ul><li><a href="/kinh-te/gia-lua-tang-9002.html">'
            'Giá lúa tăng mạnh</a></li></ul></div>')

#: Expected records, by URL (the fields the chain must get right).
ARTICLE_1 = {
    "url": f"{BASE}/the-thao/doi-tuyen-thang-dam-9001.html",
    "article_id": "9001",
    "title": "Đội tuyển Việt Nam thắng đậm trong trận giao hữu",
    "lead": "Tối 21/3, đội tuyển Việt Nam thắng 3-0 trong trận giao hữu trên sân Mỹ Đình.",
    "authors": ["Minh Anh", "Quốc Việt"],
    "source": None,
    "published_at": "2024-03-21T19:30:00+07:00",
    "modified_at": "2024-03-22T08:00:00+07:00",
    "section": ["Thể thao"],
    "tags": ["bóng đá", "đội tuyển"],
    "images": [{"url": f"{BASE}/images/2024/03/ancung.jpg", "caption": "Các cầu thủ ăn mừng bàn thắng."}],
    "language": "vi",
    "body": [
        "Ngay từ những phút đầu, các cầu thủ áo đỏ đã chủ động tấn công và liên tục gây sức ép lên khung thành đối phương.",
        "Phút 25, tiền đạo Văn Toàn mở tỷ số sau pha phối hợp đẹp mắt ở cánh phải, đưa khán giả trên sân vào không khí phấn khởi.",
        "Sang hiệp hai, đội tuyển ghi thêm hai bàn thắng nhờ những tình huống cố định được chuẩn bị kỹ lưỡng trên sân tập.",
        "Huấn luyện viên trưởng cho biết kết quả này là sự chuẩn bị tốt cho vòng loại sắp tới diễn ra vào tháng Sáu.",
    ],
    "extracted_by": {
        "title": "json-ld", "lead": "json-ld", "body": "trafilatura", "authors": "json-ld",
        "source": "json-ld", "published_at": "json-ld", "modified_at": "json-ld", "images": "json-ld",
        "tags": "json-ld", "section": "json-ld", "language": "meta",
    },
}
ARTICLE_2 = {
    "url": f"{BASE}/doi-song/cho-phien-vung-cao.html",
    "title": "Chợ phiên vùng cao rộn ràng ngày cuối tuần",
    "lead": "Mỗi sáng Chủ nhật, chợ phiên Bắc Hà lại đông vui với hàng nghìn người dân và du khách.",
    "authors": [],
    "source": "TTXVN",
    "published_at": "2024-05-02T07:15:00+07:00",
    "modified_at": None,
    "section": ["Đời sống"],
    "tags": ["Chợ phiên", "Du lịch vùng cao"],
    "images": [{"url": f"{BASE}/images/2024/05/chophien.jpg", "caption": None}],
    "language": "vi",
    "body": [
        "Từ tờ mờ sáng, đồng bào các dân tộc từ những bản làng xa đã gùi hàng hóa xuống chợ, mang theo rau rừng, thổ cẩm và gia súc.",
        "Chợ không chỉ là nơi mua bán mà còn là điểm hẹn để bà con gặp gỡ, trò chuyện và giữ gìn nét văn hóa truyền thống.",
        "Nhiều du khách nước ngoài thích thú khi được thưởng thức món thắng cố và xem các em nhỏ chơi đùa bên những gian hàng.",
    ],
    "extracted_by": {
        "title": "opengraph", "lead": "opengraph", "body": "trafilatura", "authors": "opengraph",
        "source": "opengraph", "published_at": "opengraph", "modified_at": None, "images": "opengraph",
        "tags": "opengraph", "section": "opengraph", "language": "meta",
    },
}
ARTICLE_3 = {
    "url": f"{BASE}/kinh-te/gia-lua-tang-9002.html",
    "article_id": "9002",
    "title": "Giá lúa tăng mạnh, nông dân phấn khởi",
    "authors": ["Thu Hà"],
    "published_at": "2024-06-10T10:00:00+07:00",
    "language": "vi",
    "extracted_by": {
        "title": "trafilatura", "lead": None, "body": "trafilatura", "authors": "meta", "source": "meta",
        "published_at": "htmldate", "modified_at": None, "images": None, "tags": None, "section": None,
        "language": "meta",
    },
}
SOFT_404_URL = f"{BASE}/the-thao/bai-da-go-9003.html"


def _ld(obj: dict) -> str:
    return f'<script type="application/ld+json">{json.dumps(obj, ensure_ascii=False)}</script>'


def _body_html(paragraphs: list[str]) -> str:
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)


def pages() -> dict[str, str]:
    """URL path -> HTML of every page of the site."""
    a1, a2 = ARTICLE_1, ARTICLE_2
    ld1 = {
        "@context": "https://schema.org", "@type": "NewsArticle", "headline": a1["title"],
        "description": a1["lead"], "datePublished": "2024-03-21T19:30:00+07:00",
        "dateModified": "2024-03-22T08:00:00+07:00",
        "author": [{"@type": "Person", "name": "Minh Anh"}, {"@type": "Person", "name": "Quốc Việt"}],
        "articleSection": "Thể thao", "keywords": "bóng đá, đội tuyển",
        "image": {"@type": "ImageObject", "url": "/images/2024/03/ancung.jpg", "caption": "Các cầu thủ ăn mừng bàn thắng."},
        "inLanguage": "vi",
    }
    article1 = (
        _HEAD.format(title=a1["title"] + " | Tin Tức Example", meta=_ld(ld1))
        + f"<main><article><h1>{a1['title']}</h1><p class=\"sapo\"><strong>{a1['lead']}</strong></p>{_SHARE}"
        + '<figure><img src="/images/2024/03/ancung.jpg" alt=""><figcaption>Các cầu thủ ăn mừng bàn thắng.</figcaption></figure>'
        + _body_html(a1["body"]) + '<p style="text-align:right"><strong>Minh Anh - Quốc Việt</strong></p>'
        + f"</article>{_RELATED}</main>" + _FOOT
    )
    og2 = "".join(
        f'<meta property="{p}" content="{v}">' for p, v in (
            ("og:type", "article"), ("og:site_name", "Tin Tức Example"),
            ("og:title", a2["title"] + " - Tin Tức Example"), ("og:description", a2["lead"]),
            ("og:image", f"{BASE}/images/2024/05/chophien.jpg"), ("og:locale", "vi_VN"),
            ("article:published_time", "2024-05-02T07:15:00+07:00"), ("article:section", "Đời sống"),
            ("article:tag", "Chợ phiên"), ("article:tag", "Du lịch vùng cao"), ("article:author", "Theo TTXVN"),
        )
    )
    article2 = (
        _HEAD.format(title=a2["title"], meta=og2)
        + f"<main><article><h1>{a2['title']}</h1>{_SHARE}" + _body_html(a2["body"])
        + "<p><em>Theo TTXVN</em></p></article></main>" + _FOOT
    )
    body3 = [
        "Những ngày gần đây, giá lúa tại các tỉnh phía Bắc tăng mạnh so với cùng kỳ năm trước, có nơi tăng tới 20%.",
        "Theo các thương lái, nhu cầu xuất khẩu gạo tăng cao là nguyên nhân chính khiến giá lúa liên tục đi lên.",
        "Bà con nông dân phấn khởi vì vụ mùa năm nay vừa được mùa vừa được giá, thu nhập tăng đáng kể.",
        "Ngành nông nghiệp khuyến cáo người dân không nên bán tháo mà cần theo dõi sát diễn biến thị trường để có lợi nhất.",
    ]
    article3 = (
        _HEAD.format(title="Giá lúa tăng mạnh, nông dân phấn khởi",
                     meta='<meta name="author" content="Bài, ảnh: Thu Hà">'
                          '<meta name="parsely-pub-date" content="2024-06-10T10:00:00+07:00">')
        + "<main><div class=\"post\"><h1>Giá lúa tăng mạnh, nông dân phấn khởi</h1>"
        + _body_html(body3) + "</div></main>" + _FOOT
    )
    listing = (
        _HEAD.format(title="Thể thao - Tin Tức Example", meta='<meta property="og:type" content="website">')
        + '<main><h1>Thể thao</h1><ul class="list"><li><a href="/the-thao/doi-tuyen-thang-dam-9001.html">'
        + "Đội tuyển Việt Nam thắng đậm</a></li><li><a href=\"/the-thao/bai-da-go-9003.html\">Bài đã gỡ</a></li></ul></main>" + _FOOT
    )
    home = (
        _HEAD.format(title="Tin Tức Example", meta='<meta property="og:type" content="website">')
        + '<main><a href="/the-thao/doi-tuyen-thang-dam-9001.html">Đội tuyển thắng đậm</a>'
        + '<a href="/doi-song/cho-phien-vung-cao.html">Chợ phiên vùng cao</a>'
        + '<a href="/kinh-te/gia-lua-tang-9002.html">Giá lúa tăng</a></main>' + _FOOT
    )
    soft_404 = (
        _HEAD.format(title="Không tìm thấy bài viết - Tin Tức Example", meta='<meta property="og:type" content="website">')
        + "<main><h1>Không tìm thấy bài viết</h1><p>Bài viết bạn tìm không tồn tại hoặc đã bị gỡ bỏ.</p></main>" + _FOOT
    )
    return {
        "/": home,
        "/the-thao/": listing,
        "/doi-song/": listing.replace("Thể thao", "Đời sống"),
        "/tag/bong-da/": listing.replace("Thể thao", "Bóng đá"),
        "/the-thao/doi-tuyen-thang-dam-9001.html": article1,
        "/doi-song/cho-phien-vung-cao.html": article2,
        "/kinh-te/gia-lua-tang-9002.html": article3,
        "/the-thao/bai-da-go-9003.html": soft_404,
    }


def write_site(root: Path) -> Path:
    """Write the site under ``root`` (``/x/`` -> ``x/index.html``) plus robots.txt."""
    for path, html in pages().items():
        target = root / (path.lstrip("/") + "index.html" if path.endswith("/") else path.lstrip("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html, encoding="utf-8")
    (root / "robots.txt").write_text("User-agent: *\nAllow: /\n", encoding="utf-8")
    return root


class SiteProxy:
    """HTTP forward proxy that answers for :data:`HOST` from a folder (other hosts: 403).
    ``requests`` logs every URL asked for."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the request list is the log
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                proxy.requests.append(self.path)
                if url.hostname != HOST:
                    self.send_error(403)
                    return
                rel = url.path.lstrip("/")
                file = proxy.root / (rel + "index.html" if rel.endswith("/") or not rel else rel)
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                ctype = "text/plain; charset=utf-8" if file.suffix == ".txt" else "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "SiteProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
