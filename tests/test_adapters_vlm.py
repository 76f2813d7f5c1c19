"""Generative vision-language adapters (Florence-2, Qwen2.5-VL, Qwen3-VL) through the real loading path, on tiny
random-weight models saved locally. A random model writes nothing useful, so what it generates is scripted (a
logits processor) with known token probabilities: the parsing, the mapping of boxes back to the image and the
token-probability score are checked end to end, and Florence-2's parsing against transformers' own."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.support import random_models_vlm  # noqa: E402
from tests.support.random_models_hf import natural_image  # noqa: E402
from tests.support.random_models_vlm import ScriptedTokens, scripted_pieces  # noqa: E402
from verilabel import ImageItem, PredictContext  # noqa: E402
from verilabel.errors import ConfigError, ModelLoadError  # noqa: E402
from verilabel.models import registry  # noqa: E402
from verilabel.models.adapters import hf_florence2, hf_qwen_vl  # noqa: E402
from verilabel.models.adapters.hf_florence2 import CAPTION_TASKS, DETECTION_TASK  # noqa: E402
from verilabel.models.catalogue import builtin_catalogue  # noqa: E402
from verilabel.models.checks import check_predictions  # noqa: E402
from verilabel.models.interface import LoadRequest  # noqa: E402
from verilabel.models.preprocess import to_batch  # noqa: E402

pytestmark = pytest.mark.torch

QWEN = {"qwen2.5": "qwen2.5-vl-3b-instruct", "qwen3": "qwen3-vl-2b-instruct"}
Piece = tuple[str, float]  # a piece of generated text, and the probability of each of its tokens


def items(*shapes: tuple[int, int]) -> list[ImageItem]:
    return [ImageItem(i, f"img{i}.jpg", natural_image(h, w, seed=i)) for i, (h, w) in enumerate(shapes)]


def load(name: str, weights: Path, classes: tuple[str, ...] = (), **options: Any) -> Any:
    request = LoadRequest(weights=str(weights), device="cpu", classes=classes, options=options)
    return registry.load(registry.resolve(name), request)


def predict_checked(model: Any, images: list[ImageItem], context: PredictContext) -> list[list[Any]]:
    for image in images:
        image.prepared = model.prepare(image.array) if hasattr(model, "prepare") else None
    return check_predictions(model.spec, context, images, model.predict(images, context))


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny saved models, built on first use."""
    folder = tmp_path_factory.mktemp("vlm-weights")
    builders = {
        "florence2": random_models_vlm.save_florence2,
        "qwen2.5": random_models_vlm.save_qwen_vl,
        "qwen3": lambda path: random_models_vlm.save_qwen_vl(path, "qwen3"),
    }

    class Lazy(dict[str, Path]):
        def __missing__(self, key: str) -> Path:
            self[key] = builders[key](folder / key)
            return self[key]

    return Lazy()


def script(monkeypatch: pytest.MonkeyPatch, model: Any, rows: list[list[Piece]]) -> None:
    """Make the model's network generate ``rows`` (one per prompt, in the order the adapter batches them)."""
    scripted = [scripted_pieces(model._tokenizer, row) for row in rows]
    end = model._config.eos_token_id
    scripted_processor = ScriptedTokens(scripted, end[0] if isinstance(end, list) else end)
    original = model._net.generate

    def generate(*args: Any, logits_processor: Any = (), **kwargs: Any) -> Any:
        processors = transformers.LogitsProcessorList([scripted_processor, *logits_processor])  # the script first
        return original(*args, logits_processor=processors, **kwargs)

    monkeypatch.setattr(model._net, "generate", generate)


def proxy(tokenizer: Any, pieces: list[Piece]) -> float:
    """The expected score of the object these pieces spell: the geometric mean of their tokens' probabilities."""
    _, probabilities = scripted_pieces(tokenizer, pieces)
    return math.exp(sum(math.log(p) for p in probabilities) / len(probabilities))


def boxes_of(found: list[Any]) -> list[tuple[float, float, float, float]]:
    """Each detection's relative corner box (x1, y1, x2, y2)."""
    return [(d.box.x, d.box.y, d.box.x + d.box.w, d.box.y + d.box.h) for d in found]


# --- Florence-2 -----------------------------------------------------------------------------------------------
def test_florence_prompts_are_what_the_processor_builds(weights):
    model = load("florence-2-base", weights["florence2"])
    processor = transformers.AutoProcessor.from_pretrained(weights["florence2"])
    image = natural_image(48, 80)
    for task, text in [(DETECTION_TASK, "traffic light"), ("<CAPTION>", ""), ("<MORE_DETAILED_CAPTION>", "")]:
        expected = processor(text=task + text, images=image, return_tensors="pt")["input_ids"][0].tolist()
        assert model.prompt_ids(task, text) == expected
    assert model.spec.input_size == 64 and model.spec.default_confidence == 0.1


def test_florence_prepare_matches_the_processor_pixels(weights):
    model = load("florence-2-base", weights["florence2"])
    processor = transformers.AutoProcessor.from_pretrained(weights["florence2"])
    image = natural_image(120, 90)
    prepared = model.prepare(image)
    assert prepared.shape == (64, 64, 3)  # stretched to the square, not keeping the aspect
    mine = to_batch([prepared], torch.device("cpu"), mean=model._image.mean, std=model._image.std)
    theirs = processor(text="<CAPTION>", images=image, return_tensors="pt")["pixel_values"]
    assert mine.shape == theirs.shape and (mine - theirs).abs().mean() < 0.05


def test_florence_shares_image_features_across_prompts_and_generates_what_the_model_does(weights):
    """Encoder inputs built from one vision pass per image give the tokens and scores of the whole model run on
    the processor's layout, prompt by prompt."""
    model = load("florence-2-base", weights["florence2"], max_new_tokens=6, prompt_batch=2)
    model._config.min_new_tokens = 6  # a random model ends at once: make it write
    prepared = [model.prepare(i.array) for i in items((48, 80), (100, 40))]
    rows = [(0, model.prompt_ids(DETECTION_TASK, "cat")), (1, model.prompt_ids(DETECTION_TASK, "cat"))]
    rows.append((1, model.prompt_ids(DETECTION_TASK, "hot dog")))  # a longer prompt: padded, in a second chunk
    ours = model.generate(prepared, rows)
    pixels = to_batch(prepared, torch.device("cpu"), mean=model._image.mean, std=model._image.std)
    with torch.inference_mode():
        for (image, ids), tokens, logprobs in zip(rows, ours.tokens, ours.logprobs, strict=True):
            inputs = {"input_ids": torch.tensor([ids]), "pixel_values": pixels[image : image + 1]}
            expected = hf_florence2.greedy(model._net, model._config, **inputs)
            assert len(tokens) >= 5 and tokens == expected.tokens[0]  # the last may be a forced end
            assert logprobs == pytest.approx(expected.logprobs[0], abs=1e-4)


FLORENCE_OUTPUTS = [  # (generated text, how many boxes transformers finds in it)
    ("<s>cat<loc_53><loc_334><loc_933><loc_775></s>", 1),
    ("<s>cat<loc_1><loc_2><loc_3><loc_4><loc_500><loc_600><loc_700><loc_800>dog<loc_0><loc_0><loc_9><loc_9></s>", 3),
    ("<s> traffic light<loc_10><loc_20><loc_30><loc_40><loc_50><loc_60>hot dog<loc_7><loc_8><loc_9></s><pad>", 1),
    ("<s>café<loc_100><loc_200><loc_300><loc_400>the image</s>", 1),
    ("<s><loc_1><loc_2><loc_3><loc_4>cat<od>dog</od><loc_5><loc_6><loc_7><loc_8></s>", 1),  # its phrase: "od>"
    ("<s>a cat on a mat</s>", 0),
]


@pytest.mark.parametrize(("output", "count"), FLORENCE_OUTPUTS)
def test_florence_parsing_agrees_with_post_process_generation(weights, output, count):
    """Same phrases, same boxes: transformers' pixel corners are this parser's, truncated to integers (an image
    of 2000 x 500 px: bins of 2 and 0.5 px, exact in transformers' float32; 1e-9 absorbs 0.5005 * 2000 =
    1000.9999... in float64)."""
    processor = transformers.AutoProcessor.from_pretrained(weights["florence2"])
    tokenizer = processor.tokenizer
    ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    size = (2000, 500)
    ours = hf_florence2.parse_locations(tokenizer, ids)
    assert len(ours) == count
    pixels = [[math.floor(r * s + 1e-9) for r, s in zip(box.relative(), size * 2, strict=True)] for box in ours]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    for kwargs in ({"text": text}, {"sequence": ids}):
        theirs = processor.post_process_generation(**kwargs, task=DETECTION_TASK, image_size=size)[DETECTION_TASK]
        assert [box.phrase for box in ours] == theirs["bboxes_labels"]
        assert pixels == theirs["bboxes"]


def test_florence_parsing_finds_the_tokens_that_spell_each_box(weights):
    tokenizer = transformers.AutoProcessor.from_pretrained(weights["florence2"]).tokenizer
    ids = tokenizer("<s>hot dog<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8></s>", add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(ids["input_ids"])
    first, second = hf_florence2.parse_locations(tokenizer, ids["input_ids"])
    assert first.phrase == second.phrase == "hot dog" and second.bins == (5, 6, 7, 8)
    phrase = [t for t in tokens if not t.startswith("<")]
    assert [tokens[i] for i in first.tokens] == [*phrase, "<loc_1>", "<loc_2>", "<loc_3>", "<loc_4>"]
    assert [tokens[i] for i in second.tokens] == [*phrase, "<loc_5>", "<loc_6>", "<loc_7>", "<loc_8>"]


def test_florence_detects_through_the_registry_with_the_token_probability_score(weights, monkeypatch):
    classes = ("cat", "traffic_light")
    model = load("florence-2-base", weights["florence2"], classes)
    start, loc = [("<s>", 0.9)], "<loc_{}>".format
    cat = [("cat", 0.8), (loc(100), 0.7), (loc(200), 0.6), (loc(300), 0.9), (loc(400), 0.95)]
    light = [("Traffic light", 0.99)]  # as prompted, another case
    sure = [(loc(0), 0.8), (loc(10), 0.8), (loc(999), 0.8), (loc(500), 0.8)]
    unsure = [(loc(20), 0.55), (loc(30), 0.55), (loc(40), 0.55), (loc(50), 0.55)]
    dog = [("dog", 0.9), (loc(1), 0.9), (loc(2), 0.9), (loc(3), 0.9), (loc(4), 0.9)]
    # rows image by image, class by class; two boxes after one phrase share it; a class not asked for is dropped
    script(monkeypatch, model, [start + cat, start + light + sure + unsure, start + dog, []])
    images = items((48, 80), (100, 40))
    found, nothing = predict_checked(model, images, PredictContext("detection", classes, 0.0))
    tokenizer = model._tokenizer
    expected = sorted(
        [
            (proxy(tokenizer, light + sure), "traffic_light", (0.0005, 0.0105, 0.9995, 0.5005)),
            (proxy(tokenizer, cat), "cat", (0.1005, 0.2005, 0.3005, 0.4005)),
            (proxy(tokenizer, light + unsure), "traffic_light", (0.0205, 0.0305, 0.0405, 0.0505)),
        ],
        reverse=True,
    )
    assert nothing == [] and [d.label for d in found] == [label for _, label, _ in expected]
    assert [d.confidence for d in found] == pytest.approx([score for score, _, _ in expected], abs=1e-5)
    np.testing.assert_allclose(boxes_of(found), [box for _, _, box in expected], atol=1e-6)
    assert 0.5 < expected[-1][0] < expected[0][0] < 1
    floor = (expected[-1][0] + expected[-2][0]) / 2
    found, _ = predict_checked(model, images, PredictContext("detection", classes, floor))
    assert [d.label for d in found] == [label for _, label, _ in expected[:2]]


def test_florence_captions(weights, monkeypatch):
    model = load("florence-2-base", weights["florence2"])
    script(monkeypatch, model, [[("<s>", 0.9), ("a cat", 0.8)], [("<s>", 0.9), (" dog", 0.7)]])
    prompts: list[Any] = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda prepared, rows: prompts.append(rows) or generate(prepared, rows))
    assert model.caption(items((48, 80), (100, 40)), "more_detailed") == ["a cat", "dog"]
    assert [ids for _, ids in prompts[0]] == [model.prompt_ids("<MORE_DETAILED_CAPTION>")] * 2
    assert set(CAPTION_TASKS) == {"caption", "detailed", "more_detailed"}
    assert model.caption([], "caption") == []
    with pytest.raises(ConfigError, match="detail"):
        model.caption(items((48, 80)), "long")


def test_florence_generates_nothing_without_classes(weights, monkeypatch):
    model = load("florence-2-base", weights["florence2"])
    monkeypatch.setattr(model._net, "generate", lambda **_: pytest.fail("no prompt to generate"))
    assert model.predict(items((48, 80), (32, 32)), PredictContext("detection", (), 0.0)) == [[], []]


# --- Qwen2.5-VL and Qwen3-VL ----------------------------------------------------------------------------------
QWEN_ANSWER = (
    'Sure.\n```json\n[\n  {"bbox_2d": [10, 20, 30, 40], "label": "cat"},\n  {"bbox_2d": [1, 2, 3], "label": "dog"},\n'
    '  {"bbox_2d": [5, 6, 7, 8], "label": 7},\n  {"bbox_2d": [true, 6, 7, 8], "label": "dog"},\n'
    '  {"bbox_2d": [[1, 2, 3, 4]], "label": "dog"},\n  {oops},\n'
    '  {"bbox": [1.5, 2.5, 3.5, 4.5], "label": "hot \\"dog\\"", "score": 0.3},\n'
    '  {"label": "dog", "bbox_2d": [50, 60, 70, 80]},\n  {"bbox_2d": [90, 91, 9'
)


def test_qwen_answers_are_parsed_leniently():
    found = hf_qwen_vl.parse_answer(QWEN_ANSWER)
    assert [(g.label, g.box) for g in found] == [
        ("cat", (10, 20, 30, 40)),
        ('hot "dog"', (1.5, 2.5, 3.5, 4.5)),
        ("dog", (50, 60, 70, 80)),
    ]
    assert [[QWEN_ANSWER[a:b] for a, b in g.spans] for g in found] == [
        ["cat", "10", "20", "30", "40"],
        ['hot \\"dog\\"', "1.5", "2.5", "3.5", "4.5"],
        ["dog", "50", "60", "70", "80"],
    ]
    assert hf_qwen_vl.parse_answer("no boxes here") == []
    assert hf_qwen_vl.parse_answer('[{"bbox_2d": [1, 2, 3, 4], "label": "cat"}') != []  # the list never closed


def test_qwen_decoding_keeps_a_split_character_together(weights):
    tokenizer = transformers.AutoTokenizer.from_pretrained(weights["qwen2.5"])
    ids = tokenizer('é😀 {"cat"}', add_special_tokens=False)["input_ids"]
    text, spans = hf_qwen_vl.decode_with_spans(tokenizer, ids)
    assert text == tokenizer.decode(ids) == 'é😀 {"cat"}'
    assert len(ids) > len(text)  # é and 😀 are several byte tokens each
    assert spans[0] == (0, 1) and spans[2] == spans[5] == (1, 2) and spans[-1] == (len(text) - 1, len(text))
    assert [text[a:b] for a, b in dict.fromkeys(spans)] == ["é", "😀", " ", "{", '"', "cat", '"', "}"]


def _answer(objects: list[tuple[list[str], str, float]], *, close: bool = True) -> tuple[list[Piece], list[Any]]:
    """An answer in Qwen's format, object k's numbers and label at probability p and the JSON around at 0.99;
    and per object, the pieces that spell it."""
    pieces: list[Piece] = [("```json\n[\n", 0.99)]
    spelt = []
    for numbers, label, p in objects:
        pieces.append(('  {"bbox_2d": [', 0.99))
        for n, number in enumerate(numbers):
            pieces += [(number, p)] + ([(", ", 0.99)] if n < len(numbers) - 1 else [])
        pieces += [('], "label": "', 0.99), (label, p), ('"},\n', 0.99)]
        spelt.append([(number, p) for number in numbers] + [(label, p)])
    return pieces + ([("]\n```", 0.99)] if close else []), spelt


@pytest.mark.parametrize("version", ["qwen2.5", "qwen3"])
def test_qwen_detects_through_the_registry_and_maps_boxes_back(weights, monkeypatch, version):
    """Qwen2.5-VL's pixels of the resized image (``smart_resize``) and Qwen3-VL's thousandths, back to the image;
    labels not asked for dropped, boxes clipped, an answer cut off by max_new_tokens read up to the cut."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    tokenizer = transformers.AutoTokenizer.from_pretrained(weights[version])
    first, (cat, _, light) = _answer(
        [
            (["10", "5", "60", "30"], "cat", 0.7),
            (["0", "0", "20", "20"], "bird", 0.9),
            (["-4", "10", "5000", "40"], "Traffic Light", 0.8),
        ]
    )
    dogs = [(["3", "4", "20", "90"], "dog", 0.9)] * 3
    second, (whole, *_) = _answer([(["1", "2", "27", "100"], "cat", 0.6), *dogs, (["5", "6", "7", "8"], "cat", 0.9)])
    limit = len(scripted_pieces(tokenizer, second[:-4])[0])  # cuts the last cat before its label
    assert limit > len(scripted_pieces(tokenizer, first)[0])  # the first answer ends before
    classes = ("cat", "traffic_light")
    model = load(QWEN[version], weights[version], classes, max_new_tokens=limit)
    script(monkeypatch, model, [first, second])
    images = items((48, 80), (100, 40))
    found = predict_checked(model, images, PredictContext("detection", classes, 0.0))
    assert [[d.label for d in f] for f in found] == [["traffic_light", "cat"], ["cat"]]
    expected = [[proxy(tokenizer, light), proxy(tokenizer, cat)], [proxy(tokenizer, whole)]]
    assert expected == [[pytest.approx(0.8), pytest.approx(0.7)], [pytest.approx(0.6)]]
    assert [d.confidence for f in found for d in f] == pytest.approx([e for row in expected for e in row], abs=1e-5)
    if version == "qwen3":
        scales = [(1000, 1000), (1000, 1000)]
    else:
        size = model._processor.image_processor.size
        resized = [smart_resize(i.height, i.width, 28, size.shortest_edge, size.longest_edge) for i in images]
        scales = [(w, h) for h, w in resized]
        assert scales == [(84, 56), (28, 112)]
    (w0, h0), (w1, h1) = scales
    np.testing.assert_allclose(boxes_of(found[0]), [(0, 10 / h0, 1, 40 / h0), (10 / w0, 5 / h0, 60 / w0, 30 / h0)])
    np.testing.assert_allclose(boxes_of(found[1]), [(1 / w1, 2 / h1, 27 / w1, 100 / h1)])


def test_qwen_prompt_names_the_classes_in_the_chat_template(weights):
    model = load("qwen2.5-vl-7b-instruct", weights["qwen2.5"])
    text = model.text(("cat", "traffic_light"))
    assert 'categories: "cat, traffic light". Report bbox coordinates in JSON format.' in text
    assert text.count("<|image_pad|>") == 1 and text.endswith("<|im_start|>assistant\n")
    model._processor.chat_template = None
    assert model.text(("dog",)) == hf_qwen_vl.CHATML.format(hf_qwen_vl.PROMPT.replace("{}", "dog"))
    assert model.text(("dog",)).startswith("<|im_start|>user\n<|vision_start|>")


def test_qwen_options(weights):
    assert load(QWEN["qwen2.5"], weights["qwen2.5"])._thousandths is False
    assert load(QWEN["qwen3"], weights["qwen3"])._thousandths is True
    assert load(QWEN["qwen2.5"], weights["qwen2.5"], coordinates="thousandths")._thousandths is True
    with pytest.raises(ConfigError, match="coordinates"):
        load(QWEN["qwen2.5"], weights["qwen2.5"], coordinates="relative")
    with pytest.raises(ConfigError, match="prompt"):
        load(QWEN["qwen2.5"], weights["qwen2.5"], prompt="Find the objects.")
    model = load(QWEN["qwen2.5"], weights["qwen2.5"], max_pixels=28 * 28 * 8)
    raw = model.infer(items((480, 640)), PredictContext("detection", ("cat",), 0.0))
    assert raw.scales[0][0] * raw.scales[0][1] <= 28 * 28 * 8  # max_pixels reached the processor


# --- shared -----------------------------------------------------------------------------------------------------
class StubGenerator:
    """``generate`` as transformers runs greedy decoding: a 2-token prompt, then 4 steps, each passing crafted
    scores through the logits processors and picking their argmax."""

    def __init__(self) -> None:
        self.generation_config = transformers.GenerationConfig(eos_token_id=[5, 6], pad_token_id=0, do_sample=True)
        self.scores = torch.randn(4, 2, 8, generator=torch.Generator().manual_seed(0))
        self.scores[:, 1, 5:7] = -10.0  # the second row never ends
        self.scores[2, 0, 6] = 10.0  # the first ends at its third step, on 6
        self.config: Any = None

    def generate(self, generation_config: Any, logits_processor: Any, **inputs: Any) -> Any:
        self.config = generation_config
        sequences = torch.full((2, 2), 7)
        for scores in self.scores:
            for processor in logits_processor:
                scores = processor(sequences, scores)
            sequences = torch.cat([sequences, scores.argmax(-1, keepdim=True)], dim=1)
        return sequences


def test_greedy_reads_the_probabilities_of_the_chosen_tokens_and_stops_at_an_end_token():
    net = StubGenerator()
    config = hf_florence2.greedy_config(net, 4)
    assert config.do_sample is False and config.num_beams == 1 and config.max_new_tokens == 4
    assert net.generation_config.do_sample is True  # the model's own config is left alone
    generated = hf_florence2.greedy(net, config, input_ids=None)
    assert net.config is config
    chosen = net.scores.argmax(-1).T.tolist()
    assert chosen[0][2] == 6 and not {5, 6} & {*chosen[0][:2], *chosen[1]}
    assert generated.tokens == [chosen[0][:2], chosen[1]]  # the first row stops before its end token
    for row, (tokens, logprobs) in enumerate(zip(generated.tokens, generated.logprobs, strict=True)):
        expected = [float(net.scores[step, row].log_softmax(-1)[t]) for step, t in enumerate(tokens)]
        assert logprobs == pytest.approx(expected, abs=1e-6)
    probabilities = [math.log(0.5), math.log(0.8), math.log(0.2)]
    assert hf_florence2.geometric_mean(probabilities, [0, 2]) == pytest.approx(math.sqrt(0.5 * 0.2))
    assert hf_florence2.geometric_mean(probabilities, []) == 0.0


def test_catalogue_entries_say_their_scores_are_token_probabilities():
    entries = {e.name: e for e in builtin_catalogue() if e.loader.startswith("verilabel.models.adapters.hf_")}
    names = ["florence-2-base", "florence-2-large", "qwen2.5-vl-3b-instruct", "qwen2.5-vl-7b-instruct"]
    names += ["qwen3-vl-2b-instruct", "qwen3-vl-4b-instruct", "qwen3-vl-8b-instruct"]
    for name in names:
        entry = entries[name]
        assert entry.score == "token-probability" and entry.zero_shot and entry.tasks == ("detection",)
        assert entry.to_json()["score"] == "token-probability" and entry.extra == "transformers"
    assert entries["florence-2-base"].weights == "hf:florence-community/Florence-2-base"
    assert entries["qwen2.5-vl-7b-instruct"].weights == "hf:Qwen/Qwen2.5-VL-7B-Instruct"


def test_models_do_not_load_without_their_weights(monkeypatch, tmp_path, weights):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name, repo in [
        ("florence-2-large", "florence-community/Florence-2-large"),
        ("qwen2.5-vl-7b-instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("qwen3-vl-4b-instruct", "Qwen/Qwen3-VL-4B-Instruct"),
    ]:
        with pytest.raises(ModelLoadError) as info:
            registry.load(registry.resolve(name), LoadRequest(device="cpu"))
        assert repo in str(info.value) and "--weights" in str(info.value) and "downloads are off" in str(info.value)
    with pytest.raises(ModelLoadError, match="not found"):
        load("florence-2-base", tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="not Florence-2"):
        load("florence-2-base", weights["qwen2.5"])
    with pytest.raises(ModelLoadError, match=r"not Qwen2\.5-VL or Qwen3-VL"):
        load("qwen2.5-vl-3b-instruct", weights["florence2"])
