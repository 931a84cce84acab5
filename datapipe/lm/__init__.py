"""Language-model scoring (perplexity) shared by the stages and the report."""
# placeholder: the layout-stages branch owns this package
from __future__ import annotations

# ---------------------------------------------------------------------------
# CCNet's published cut-offs (cc_net/data/cutoff.csv, rows 30 and 60): valid only for
# CCNet's own Wikipedia-trained models (``make dl_lm`` there), not for models we train.

_CCNET_LANGS = ("de it fr nl pl pt es no da id lt fi en hu ro ko ar bn fa ru uk ml my lv is ca ne et hy ja "
                "hr hi az el cs bg he zh ka km gu mk kn mr af mn kk be").split()
_CCNET_P30 = (370, 220, 180, 430, 160, 170, 180, 430, 380, 600, 190, 1110, 340, 80, 180, 920, 490, 190, 370, 210,
              140, 2430, 2530, 1130, 850, 210, 860, 1270, 750, 1110, 720, 480, 600, 450, 820, 450, 1280, 1460, 910,
              1040, 1110, 530, 2210, 1380, 540, 680, 610, 670)
_CCNET_P60 = (590, 360, 330, 650, 260, 270, 290, 680, 600, 970, 270, 1500, 520, 140, 270, 2130, 790, 300, 700, 310,
              220, 3220, 3040, 1480, 1190, 330, 1130, 1620, 1080, 1450, 910, 790, 950, 670, 1140, 680, 1710, 1950,
              1310, 2180, 1570, 740, 2800, 1870, 770, 1010, 930, 910)
CCNET_CUTOFFS: dict[str, tuple[float, float]] = {
    lang: (float(a), float(b)) for lang, a, b in zip(_CCNET_LANGS, _CCNET_P30, _CCNET_P60, strict=True)
}
