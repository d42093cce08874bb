"""The plagiarism check: Dolos run for real on a planted copy of a corpus notebook and on unrelated code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from hpc_mle import plagiarism

NOTEBOOKS = {
    "alice/lgbm-baseline": [
        "import pandas as pd\nimport lightgbm as lgb\n",
        "%matplotlib inline\ntrain = pd.read_csv('train.csv')\ntest = pd.read_csv('test.csv')\n",
        "features = [c for c in train.columns if c not in ('id', 'target')]\n"
        "model = lgb.LGBMRegressor(n_estimators=500, learning_rate=0.05, num_leaves=31)\n"
        "model.fit(train[features], train['target'])\n"
        "test['target'] = model.predict(test[features])\n"
        "for col in features:\n    print(col, train[col].mean(), train[col].std())\n"
        "test[['id', 'target']].to_csv('submission.csv', index=False)\n",
    ],
    "bob/eda-and-ridge": [
        "import numpy as np\nfrom sklearn.linear_model import Ridge\nimport pandas as pd\n",
        "df = pd.read_csv('train.csv')\nX = df.drop(columns=['target']).values\ny = df['target'].values\n"
        "alphas = np.logspace(-3, 3, 13)\nscores = []\nfor a in alphas:\n"
        "    r = Ridge(alpha=a).fit(X, y)\n    scores.append(r.score(X, y))\nprint(max(scores))\n",
    ],
}

UNRELATED = """import os
import sys


def walk(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            total += os.path.getsize(os.path.join(dirpath, name))
    return total


if __name__ == '__main__':
    print(walk(sys.argv[1]), file=sys.stderr)
"""


def _notebook(cells: list[str]) -> dict:
    return {"cells": [{"cell_type": "code", "source": src.splitlines(keepends=True), "metadata": {}, "outputs": []}
                      for src in cells] + [{"cell_type": "markdown", "source": ["# notes"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class LocalKernels:
    """The two kaggle calls the fetch uses, answered from local notebooks (no network in tests)."""

    def __init__(self) -> None:
        self.asked: dict = {}

    def kernels_list(self, **kwargs):
        self.asked = kwargs
        return [SimpleNamespace(ref=ref) for ref in NOTEBOOKS]

    def kernels_pull(self, kernel: str, path: str, **kwargs) -> None:
        Path(path, kernel.split("/")[1] + ".ipynb").write_text(json.dumps(_notebook(NOTEBOOKS[kernel])))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    api = LocalKernels()
    scripts = plagiarism.fetch_reference_notebooks("mini-tabular", data, top_n=50, api=api)
    assert api.asked == {"competition": "mini-tabular", "sort_by": "voteCount", "page_size": 50, "language": "python"}
    assert [p.name for p in scripts] == ["eda-and-ridge.py", "lgbm-baseline.py"]
    return plagiarism.corpus_dir("mini-tabular", data)


def test_notebook_to_script_keeps_code_cells_only(corpus: Path) -> None:
    text = (corpus / "lgbm-baseline.py").read_text()
    assert "import lightgbm as lgb" in text and "model.fit(" in text
    assert "%matplotlib" not in text and "# notes" not in text
    compile(text, "lgbm-baseline.py", "exec")


def _dolos_or_skip() -> plagiarism.Dolos:
    try:
        return plagiarism.find_dolos()
    except plagiarism.DolosMissing as exc:
        pytest.skip(str(exc))


def test_planted_copy_flagged_and_unrelated_code_not(corpus: Path, tmp_path: Path) -> None:
    dolos = _dolos_or_skip()
    copied, clean = tmp_path / "copied" / "code", tmp_path / "clean" / "code"
    copied.mkdir(parents=True)
    clean.mkdir(parents=True)
    planted = (corpus / "lgbm-baseline.py").read_text().replace("model", "regressor")  # a renamed copy
    (copied / "solution.py").write_text(planted)
    (clean / "main.py").write_text(UNRELATED)

    hit = plagiarism.check_attempt("a1", "mini-tabular", copied, corpus, dolos)
    assert hit.flagged and hit.similarity > plagiarism.THRESHOLD
    assert hit.closest == "lgbm-baseline.py" and hit.attempt_file == "solution.py"

    miss = plagiarism.check_attempt("a2", "mini-tabular", clean, corpus, dolos)
    assert not miss.flagged and (miss.similarity or 0.0) < 0.3


def test_nothing_to_compare_is_said_not_flagged(corpus: Path, tmp_path: Path) -> None:
    empty = plagiarism.check_attempt("a3", "mini-tabular", tmp_path / "none", corpus)
    assert (empty.flagged, empty.similarity, empty.note) == (False, None, "no code in the attempt")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "x.py").write_text(UNRELATED)
    nocorpus = plagiarism.check_attempt("a4", "mini-tabular", tmp_path / "code", tmp_path / "nowhere")
    assert not nocorpus.flagged and "no reference corpus" in nocorpus.note


def test_missing_node_names_the_install(monkeypatch) -> None:
    real = shutil.which
    monkeypatch.setattr(plagiarism.shutil, "which", lambda name: None if name == "node" else real(name))
    with pytest.raises(plagiarism.DolosMissing, match="apt-get install -y nodejs npm"):
        plagiarism.find_dolos()
    monkeypatch.setattr(plagiarism.shutil, "which", lambda name: "/usr/bin/node" if name == "node" else None)
    monkeypatch.setenv("HOME", "/nonexistent")
    monkeypatch.setattr(plagiarism, "_candidates", lambda: [Path("/nonexistent/node_modules")])
    with pytest.raises(plagiarism.DolosMissing, match="@dodona/dolos-lib"):
        plagiarism.find_dolos()


def test_the_command_checks_every_attempt_of_a_sweep(corpus: Path, tmp_path: Path) -> None:
    """`hpc-mle plagiarism runs/<sweep>`: one line per attempt, the flagged count, analysis/plagiarism.csv."""
    from click.testing import CliRunner

    from hpc_mle import plan
    from hpc_mle.cli import main

    _dolos_or_skip()
    sweep, data = tmp_path / "sweep", corpus.parents[1]
    (sweep / "configs").mkdir(parents=True)
    (sweep / "configs" / "c1.json").write_text(json.dumps({"data_dir": str(data)}))
    (sweep / plan.MANIFEST).write_text("id,competition_id,config_id\ncopied,mini-tabular,c1\nclean,mini-tabular,c1\n"
                                       "empty,mini-tabular,c1\n")
    for aid, text in (("copied", (corpus / "eda-and-ridge.py").read_text()), ("clean", UNRELATED)):
        code = plan.attempt_dir(sweep, aid) / "code"
        code.mkdir(parents=True)
        (code / "main.py").write_text(text)
    result = CliRunner().invoke(main, ["plagiarism", str(sweep)])
    assert result.exit_code == 0, result.output
    assert "copied mini-tabular: 100 % closest eda-and-ridge.py (main.py) FLAGGED" in result.output
    assert "empty mini-tabular: - [no code in the attempt]" in result.output
    assert "1 of 3 attempts flagged (> 60 %)" in result.output
    table = pd.read_csv(sweep / "analysis" / "plagiarism.csv")
    assert table.set_index("attempt")["flagged"].to_dict() == {"copied": True, "clean": False, "empty": False}


def test_an_agents_links_fifos_and_huge_files_in_code_are_never_read(tmp_path: Path, monkeypatch) -> None:
    """code/ is the agent's: only its regular scripts are copied for Dolos; a link (to answers), a FIFO (that
    would block a reader) and an oversized file are skipped without being opened."""
    code = tmp_path / "code"
    (code / "pkg").mkdir(parents=True)
    (code / "pkg" / "model.py").write_text(UNRELATED)
    secret = tmp_path / "answers.py"
    secret.write_text("ANSWERS = [1, 0, 1]\n")
    (code / "answers.py").symlink_to(secret)
    (code / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(code / "blocks.py")
    monkeypatch.setattr(plagiarism, "MAX_SCRIPT_BYTES", 1000)
    (code / "huge.py").write_text("x = 1\n" * 1000)
    copies = plagiarism._copy_scripts(code, tmp_path / "copies")
    assert sorted(copies.values()) == ["pkg/model.py"]
    assert [p.read_text() for p in copies] == [UNRELATED]
