"""A 2,000-genome batch (the 238 real genomes + sampled ones) with broken genomes mixed in:
only those fail, each with its code and offset; ranks are a permutation of the ok items."""
from __future__ import annotations

from tests.conftest import train_rows

from .conftest import headers, needs_redis

pytestmark = needs_redis


def _broken(real: list[str]) -> dict[int, str]:
    g = real[0]
    return {
        5: g[: len(g) // 2],                                   # truncated
        77: g.replace("(", "((", 1),                           # stray parenthesis
        300: "NotAPrimitive(" + g + ")",                        # unknown primitive
        901: g + ", 1)",                                        # trailing garbage
        1500: "",                                               # empty
        1999: "\x00" + g,                                       # NUL byte
    }


def test_two_thousand_genomes_with_broken_ones(api):
    from ml.sampling import sample_compiling

    real = [r["genome"] for r in train_rows()]
    genomes = real + sample_compiling(2000 - len(real), seed=2026)
    broken = _broken(real)
    for index, text in broken.items():
        genomes[index] = text
    assert len(genomes) == 2000
    r = api["client"].post("/predict", json={"genomes": genomes},
                           headers=headers(api["keys"]["predict"]), timeout=300)
    assert r.status_code == 200, r.text[:500]
    out = r.json()
    failed = {i["index"]: i["error"] for i in out["items"] if not i["ok"]}
    assert set(failed) == set(broken)
    assert all(e["code"] and e["message"] for e in failed.values())
    ok = [i["index"] for i in out["items"] if i["ok"]]
    assert sorted(out["ranking"]) == ok and len(ok) == 2000 - len(broken)
    assert sorted(out["items"][i]["rank"] for i in ok) == list(range(1, len(ok) + 1))
