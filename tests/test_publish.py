"""scripts/publish.py / amh.xtts.publish: the model card, and the upload through huggingface_hub with
only the HTTP transport replaced (a fake Hub answering create-repo, preupload and commit)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import yaml

from amh.config import load_config
from amh.data.filters import FilterStats, Reason, Rejected
from amh.xtts.publish import model_card, publish, training_summary
from exports import make_export

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def export(tiny_release, demo_vocab, tmp_path_factory):
    cfg = load_config(REPO / "configs" / "demo.yaml", [f"model.release={tiny_release}"])
    stats = FilterStats()
    for _ in range(180):
        stats.add_kept(3.3)
    stats.add_rejected("wavs/x.wav", Rejected(Reason.TOO_LONG, "12 s"))
    summary = training_summary(cfg, step=150, epoch=3, best_eval=(2.5, 100),
                               last_eval={"eval/loss": 2.75, "eval/loss_text_ce": 4.0, "eval/loss_mel_ce": 2.7}, data=stats)
    return make_export(tiny_release, demo_vocab, tmp_path_factory.mktemp("publish") / "export", training=summary)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_states_base_model_language_licence_data_and_losses(export):
    card = model_card(export, "someone/xtts-v2-amharic")
    meta = front_matter(card)
    assert meta["base_model"] == "coqui/XTTS-v2" and meta["language"] == ["am"]
    assert meta["license"] == "other" and meta["license_name"] == "coqui-public-model-license"
    assert meta["pipeline_tag"] == "text-to-speech"
    assert "# xtts-v2-amharic: XTTS v2 fine-tuned on Amharic" in card
    assert "- **data**: ready `build/fixtures/demo_corpus/ready`, 180 utterances kept (0.165 h) of 181 seen" in card
    assert "- **dropped**: too_long 1" in card
    assert "- **optimizer steps**: 150 (epoch 4)" in card
    assert "| eval/loss (step 150) | 2.7500 |" in card and "| best eval/loss (step 100) | 2.5000 |" in card
    assert 'amh.load_tts(snapshot_download("someone/xtts-v2-amharic"))' in card
    assert "Coqui Public Model License" in card and "non-commercial" in card


def test_card_of_an_export_without_summary_says_so(tiny_release, demo_vocab, tmp_path):
    bare = make_export(tiny_release, demo_vocab, tmp_path / "bare")
    card = model_card(bare, "a/b")
    assert "No eval losses were recorded" in card and front_matter(card)["base_model"] == "coqui/XTTS-v2"


class FakeHub:
    """The Hub endpoints an upload of small files uses (create, validate-yaml, preupload, commit); records
    what it was sent."""

    def __init__(self, status: int = 200):
        self.status = status
        self.calls: list[tuple[str, str]] = []
        self.created: dict | None = None
        self.files: dict[str, bytes] = {}
        self.header: dict | None = None
        self.validated: str | None = None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.calls.append((request.method, path))
        if request.headers.get("authorization") != "Bearer hf_test_token":
            return httpx2.Response(401, json={"error": "Invalid credentials"})
        if self.status != 200:
            return httpx2.Response(self.status, json={"error": "forbidden"})
        if path == "/api/validate-yaml":  # upload_folder has the Hub check a README's front matter first
            self.validated = json.loads(request.content)["content"]
            yaml.safe_load(self.validated.split("---\n")[1])
            return httpx2.Response(200, json={})
        if path == "/api/repos/create":
            self.created = json.loads(request.content)
            return httpx2.Response(200, json={"url": "https://huggingface.co/someone/xtts-v2-amharic"})
        if path == "/api/models/someone/xtts-v2-amharic/preupload/main":
            files = json.loads(request.content)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                        for f in files]})
        if path == "/api/models/someone/xtts-v2-amharic/commit/main":
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    self.header = item["value"]
                elif item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            return httpx2.Response(200, json={"commitUrl": "https://huggingface.co/someone/xtts-v2-amharic/commit/" + "a" * 40,
                                              "commitOid": "a" * 40, "pullRequestUrl": None})
        return httpx2.Response(404, json={"error": f"no route {path}"})


@pytest.fixture
def fake_hub(monkeypatch):
    """huggingface_hub's own client code, talking to FakeHub through an httpx MockTransport."""
    import huggingface_hub
    from huggingface_hub import constants

    hub = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # Xet uploads go through a native library, not HTTP
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
    yield hub
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def test_publish_creates_the_repo_and_commits_the_export_with_its_card(export, fake_hub):
    url = publish(export, "someone/xtts-v2-amharic", private=True, token="hf_test_token")
    assert url.endswith("/commit/" + "a" * 40)
    assert fake_hub.created["name"] == "xtts-v2-amharic" and fake_hub.created["organization"] == "someone"
    assert fake_hub.created["visibility"] == "private"
    assert set(fake_hub.files) == {"README.md", "model.pth", "config.json", "vocab.json", "frontend.json",
                                   "training_summary.json"}
    assert fake_hub.files["model.pth"] == (export / "model.pth").read_bytes()
    assert fake_hub.files["README.md"].decode() == model_card(export, "someone/xtts-v2-amharic")
    assert fake_hub.header["summary"] == "amh-xtts export (step 150)"
    assert fake_hub.validated == fake_hub.files["README.md"].decode()


def test_a_refused_token_is_one_clear_error(export, fake_hub, tmp_path):
    from amh.errors import UserError

    with pytest.raises(UserError, match=r"refused someone/xtts-v2-amharic \(401\).*hf auth login"):
        publish(export, "someone/xtts-v2-amharic", token="hf_wrong")
    assert not fake_hub.files


def test_script_card_only_writes_readme_and_checks_the_repo_id(export, tmp_path):
    script = REPO / "scripts" / "publish.py"
    ok = subprocess.run([sys.executable, str(script), "--export", str(export), "--repo-id", "me/x", "--card-only"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert front_matter((export / "README.md").read_text(encoding="utf-8"))["language"] == ["am"]
    bad = subprocess.run([sys.executable, str(script), "--export", str(tmp_path), "--repo-id", "me/x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not an amh-xtts export" in bad.stderr and "Traceback" not in bad.stderr
