"""Published numbers the grid's results are read against. They are other people's runs, on
other set-ups: the report prints them in a separate, labelled block, never in our tables.

Each entry names its source. Entity F1 is test entity-level micro F1 (conlleval) on the
standard Twitter-2015/2017 splits; the thesis's numbers are token-level macro F1 over subword
tokens on its own splits (thesis, ch. 9.2), comparable in kind with our token macro F1 only
loosely (ours is word-level). The paper numbers were checked against copies of their tables
quoted in later papers and READMEs (UMT, HVPNeT, ITA); the preprint's and thesis's against
the texts in ../shared/papers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    model: str
    metric: str  # "entity F1" or "token macro F1 (thesis)"
    t15: float | None
    t17: float | None
    source: str

    def value(self, dataset: str) -> float | None:
        return {"t15": self.t15, "t17": self.t17}.get(dataset)


REFERENCES: tuple[Reference, ...] = (
    Reference(
        "BERT-CRF (text only)",
        "entity F1",
        71.81,
        83.44,
        "as reported by Yu et al. 2020 (ACL, UMT paper)",
    ),
    Reference("UMT", "entity F1", 73.41, 85.31, "Yu et al. 2020 (ACL)"),
    Reference("HVPNeT", "entity F1", 75.32, 86.87, "Chen et al. 2022 (Findings of NAACL)"),
    Reference(
        "ITA (XLM-R large, captions + object tags + OCR as context)",
        "entity F1",
        78.03,
        89.75,
        "Wang et al. 2022 (NAACL)",
    ),
    Reference("preprint: CWI", "entity F1", 71.61, None, "preprint Table 4 (single run)"),
    Reference("preprint: CWI + attention", "entity F1", 71.19, None, "preprint Table 4 (single run)"),
    Reference(
        "preprint: MSB-Small + CRF (Twitter-pretrained, CoNLL fine-tuned first)",
        "entity F1",
        73.47,
        None,
        "preprint Table 4 (single run)",
    ),
    Reference(
        "thesis: linear fusion, BERT+ViT",
        "token macro F1 (thesis)",
        75.32,
        74.35,
        "thesis Tables 9.2, 9.3",
    ),
    Reference(
        "thesis: cross-attention, BERT+ViT / BERT+CNN",
        "token macro F1 (thesis)",
        75.93,
        74.17,
        "thesis Tables 9.2 (BERT+ViT), 9.3 (BERT+CNN)",
    ),
    Reference(
        "thesis: partial prediction, BERT+ViT / BERT+CNN",
        "token macro F1 (thesis)",
        74.93,
        74.47,
        "thesis Tables 9.2 (BERT+ViT), 9.3 (BERT+CNN)",
    ),
    Reference(
        "thesis: text classifier, BERT", "token macro F1 (thesis)", 75.68, 72.62, "thesis Tables 9.6, 9.7"
    ),
    Reference("thesis: GPT-4o-mini prompting", "token macro F1 (thesis)", None, 54.31, "thesis Table 9.3"),
)
