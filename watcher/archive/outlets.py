"""Outlet names for link hosts, as the NodeBE4 archives name them (read off their categories).

Link posts carry no outlet field; when their folder does not name one, the link's host does.
"""

from __future__ import annotations

OUTLETS_BY_HOST: dict[str, str] = {
    "cna.com.tw": "(臺)中央社CNA",
    "rfi.fr": "法广",
    "zaobao.com": "联合早报",
    "cn.reuters.com": "路透",
    "epochtimes.com": "大纪元",
    "voachinese.com": "美国之音",
    "dw.com": "德国之声",
    "chinadigitaltimes.net": "中国数字时代",
    "bbc.com": "BBC",
    "bbc.co.uk": "BBC",
    "solidot.org": "Solidot",
    "economist.com": "经济学人en",
    "cn.nytimes.com": "纽约时报",
    "iyouport.org": "iYouPort",
    "wqw2010.blogspot.com": "维权网",
    "nei.st": "Nei.st",
    "chinafile.com": "中参馆",
    "cn.govopendata.com": "CCTV新闻联播",
    "zh.bitterwinter.org": "寒冬",
    "rfa.org": "自由亚洲电台",
    "matters.news": "Matters",
}


def outlet_for_host(host: str) -> str | None:
    """The outlet of a host (``www.`` and subdomains of a known host included), or None."""
    host = host.lower().removeprefix("www.")
    while host:
        if host in OUTLETS_BY_HOST:
            return OUTLETS_BY_HOST[host]
        _, _, host = host.partition(".")
    return None
