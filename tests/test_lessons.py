"""Lessons (core.lessons), unknown exports that never leak the answer, `cxrdesk lesson run`, PPTX handouts."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cxrdesk.core.lesson_export import answer_key_rows, export_case, read_answer_key, write_answer_key
from cxrdesk.core.lessons import Case, Lesson, LessonError, lesson_toml, load_lesson, save_lesson, toml_string

PROMPTS = ["Small right pleural effusion with blunting of the costophrenic angle",
           "Cardiomegaly and pulmonary edema", "Left upper lobe pneumonia", "Normal chest radiograph"]
# Words every export may carry (fixed text: disclaimer, body part, window names): not a leak.
GENERIC = {"chest", "radiograph", "with", "and", "the", "of", "lung", "lungs", "film", "x-ray"}


def leak_words(prompt: str) -> set[str]:
    """The prompt's words plus its findings' names and terms, lower case, generic words left out."""
    from cxrdesk.core.data.findings import mentioned_findings

    words = set(re.findall(r"[a-z][a-z\-]+", prompt.lower()))
    for label in mentioned_findings(prompt):
        words |= set(re.findall(r"[a-z][a-z\-]+", label.lower()))
    words |= {"normal", "abnormal", "finding", "findings"}
    return {w for w in words if w not in GENERIC and len(w) >= 3}


def png_texts(path) -> dict:
    """Every text chunk of a PNG (tEXt, zTXt, iTXt), read from the raw chunks, not via Pillow only."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"tEXt":
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"zTXt":
            k, v = body.split(b"\0", 1)
            out[k.decode("latin-1")] = zlib.decompress(v[1:]).decode("latin-1")
        elif kind == b"iTXt":
            k, rest = body.split(b"\0", 1)
            comp, _method, rest = rest[0], rest[1], rest[2:]
            _lang, rest = rest.split(b"\0", 1)
            _tk, text = rest.split(b"\0", 1)
            out[k.decode("latin-1")] = (zlib.decompress(text) if comp else text).decode("utf-8")
        elif kind not in (b"IHDR", b"IDAT", b"IEND", b"sBIT", b"PLTE", b"pHYs"):
            out[kind.decode("latin-1")] = body.decode("latin-1", "replace")
    return out


def dicom_texts(path) -> list[str]:
    """The value of every element (file meta and dataset, recursively) as text, pixels left out."""
    import pydicom

    ds = pydicom.dcmread(path)
    texts = []

    def walk(d):
        for el in d:
            if el.tag == (0x7FE0, 0x0010):
                continue
            if el.VR == "SQ":
                for item in el.value:
                    walk(item)
            else:
                texts.append(f"{el.keyword}={el.value}")
    walk(ds.file_meta)
    walk(ds)
    return texts


def assert_no_leak(texts, prompt):
    blob = " ".join(texts).lower()
    found = [w for w in leak_words(prompt) if re.search(r"\b" + re.escape(w) + r"\b", blob)]
    assert not found, f"answer words {found} in an unknown export: {blob[:400]}"


# --------------------------------------------------------------------------------------------
# lesson files
# --------------------------------------------------------------------------------------------

def test_lesson_toml_and_json_round_trip(tmp_path):
    lesson = Lesson(title='Pleural "disease"\tweek 1', steps=12, guidance=3.5, cases=[
        Case(prompt=PROMPTS[0], note="Blunted angle.\nCompare with the left.", seed=7),
        Case(prompt=PROMPTS[3], answer="Normal"),
        Case(prompt="C:\\path \\u0041 \x7f end", seed=2 ** 63 - 1),
    ])
    for name in ("l.toml", "l.json"):
        save_lesson(lesson, tmp_path / name)
        back = load_lesson(tmp_path / name)
        assert back.title == lesson.title and back.steps == 12 and back.guidance == 3.5
        assert [c.to_dict() for c in back.cases] == [c.to_dict() for c in lesson.cases]
    import tomllib
    assert tomllib.loads("x = " + toml_string("a\"b\\c\n\x01\x7f\u00e9"))["x"] == "a\"b\\c\n\x01\x7f\u00e9"
    assert lesson_toml(lesson).startswith("# cxrdesk lesson")


def test_default_answer_is_the_prompts_findings():
    assert Case(prompt="Small right pleural effusion").answer_text() == "Effusion"
    assert Case(prompt="Cardiomegaly. No pleural effusion.").answer_text() == "Cardiomegaly"
    assert Case(prompt="Normal chest radiograph").answer_text() == "Normal"
    assert Case(prompt="Normal chest radiograph").is_normal()
    assert not Case(prompt="Left lower lobe pneumonia").is_normal()
    assert Case(prompt="x", answer=" Right upper lobe collapse ").answer_text() == "Right upper lobe collapse"
    # a film case's answer comes from the prompt recorded in the film
    assert Case(film="a.png").answer_text("Left pneumothorax") == "Pneumothorax"


def test_prompt_list_is_a_lesson(tmp_path):
    p = tmp_path / "week1.txt"
    p.write_text("# pleural cases\n\nSmall right pleural effusion\n  # indented comment\nNormal chest radiograph\n")
    lesson = load_lesson(p)
    assert lesson.title == "week1"
    assert [c.prompt for c in lesson.cases] == ["Small right pleural effusion", "Normal chest radiograph"]


@pytest.mark.parametrize("name,text,message", [
    ("a.toml", "", "is empty"),
    ("a.toml", "title = 'x'\n[[cases]\n", "not valid TOML"),
    ("a.json", "{\"title\": ", "not valid JSON"),
    ("a.json", "[1, 2]", "must be a table/object"),
    ("a.toml", "title = 'x'\n", "no cases"),
    ("a.toml", "title = 'x'\ncases = []\n", "has no cases"),
    ("a.toml", "title = 'x'\ncolour = 1\n[[cases]]\nprompt='a'\n", "unknown key 'colour'"),
    ("a.toml", "title = 'x'\n[[cases]]\npromt = 'a'\n", "case 1: unknown key 'promt'"),
    ("a.toml", "title = 'x'\n[[cases]]\nprompt = 'a'\n[[cases]]\nnote = 'n'\n", "case 2: give a prompt or a film"),
    ("a.toml", "title = 'x'\n[[cases]]\nprompt = 'a'\nfilm = 'b.png'\n", "not both"),
    ("a.toml", "title = 'x'\n[[cases]]\nprompt = 'a'\nseed = -1\n", "seed must be"),
    ("a.toml", "title = 'x'\n[[cases]]\nprompt = 'a'\nseed = true\n", "seed must be"),
    ("a.toml", "title = 'x'\n[[cases]]\nprompt = 3\n", "prompt must be text"),
    ("a.toml", "title = ''\n[[cases]]\nprompt = 'a'\n", "title is empty"),
    ("a.toml", "title = 'x'\nsteps = 0\n[[cases]]\nprompt = 'a'\n", "steps must be"),
    ("a.toml", "title = 'x'\nversion = 9\n[[cases]]\nprompt = 'a'\n", "newer"),
    ("a.toml", "format = 'other'\n[[cases]]\nprompt = 'a'\n", "format must be"),
    ("a.toml", "title = 'x'\n[[cases]]\nfilm = 'missing.png'\n", "film not found"),
    ("a.txt", "# only comments\n\n", "has no cases"),
    ("a.json", "[" * 100000, "not valid JSON"),
])
def test_bad_lessons_give_one_line(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    with pytest.raises(LessonError) as ei:
        load_lesson(p)
    msg = str(ei.value)
    assert message in msg and "\n" not in msg and len(msg) < 300


def test_missing_folder_binary_and_huge_files(tmp_path):
    for p, message in [(tmp_path / "nope.toml", "not found"), (tmp_path, "is a folder")]:
        with pytest.raises(LessonError, match=message):
            load_lesson(p)
    (tmp_path / "b.toml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LessonError, match="not UTF-8"):
        load_lesson(tmp_path / "b.toml")
    (tmp_path / "h.txt").write_bytes(b"a" * (2 * 1024 * 1024))
    with pytest.raises(LessonError, match="larger than"):
        load_lesson(tmp_path / "h.txt")
    with pytest.raises(LessonError, match=".toml or .json"):
        save_lesson(Lesson("t", [Case(prompt="a")]), tmp_path / "x.txt")
    with pytest.raises(LessonError, match="no cases"):
        save_lesson(Lesson("t", []), tmp_path / "x.toml")


# --------------------------------------------------------------------------------------------
# unknown exports: no answer in any text chunk or DICOM element
# --------------------------------------------------------------------------------------------

def _params(prompt):
    return {"prompt": prompt, "negative_prompt": "pneumothorax, effusion", "steps": 20, "guidance_scale": 4.0,
            "guidance_interval": [0.0, 1.0], "guided_steps": 20, "seed": 1234, "sampler": "dpm++-karras",
            "width": 256, "height": 256, "native_size": 256, "upscale": None, "prompt_truncated": False,
            "max_tokens": 64, "model": "effusion-pneumonia-model", "model_hash": "abc123def456",
            "device": "cpu", "precision": "float32", "unet_engine": "onnx",
            "edit": {"derived_from": "an edited film", "prompt": "right pleural effusion"}}


@pytest.mark.parametrize("prompt", PROMPTS)
def test_unknown_png_and_dicom_hold_no_answer_word(tmp_path, prompt):
    from cxrdesk.core.dicom.reader import read_dicom
    from cxrdesk.core.imaging.pngio import read_png

    img = (np.random.default_rng(0).random((64, 64)) * 4095).astype(np.uint16)
    (tmp_path / "dicom").mkdir()
    row = export_case(tmp_path, 2, img, _params(prompt), unknown=True, dicom_dir=tmp_path / "dicom")
    png = tmp_path / row["file"]
    assert row["file"] == "case_03.png" and row["dicom"] == "dicom/case_03.dcm" and row["prompt"] == prompt
    texts = png_texts(png)
    assert texts["Description"] == "Unknown case 03" and "SYNTHETIC" in texts["Disclaimer"]
    assert_no_leak([f"{k}={v}" for k, v in texts.items()], prompt)
    meta = json.loads(texts["cxrdesk"])
    assert meta["unknown"] is True and meta["seed"] == 1234 and meta["case"] == "case 03"
    assert "prompt" not in meta and "model" not in meta and "edit" not in meta and "negative_prompt" not in meta
    back = read_png(png)
    assert back.pixels.shape == img.shape
    assert "prompt" not in back.metadata
    dtexts = dicom_texts(tmp_path / row["dicom"])
    assert_no_leak(dtexts, prompt)
    assert_no_leak(dtexts + list(texts.values()), "pneumothorax effusion edited effusion-pneumonia-model")
    d = read_dicom(tmp_path / row["dicom"])
    assert "case 03" in d.series_description and d.params.get("unknown") is True


def test_normal_exports_keep_full_provenance(tmp_path):
    import pydicom

    img = np.zeros((32, 32), np.uint16)
    (tmp_path / "dicom").mkdir()
    row = export_case(tmp_path, 0, img, _params(PROMPTS[0]), unknown=False, dicom_dir=tmp_path / "dicom")
    texts = png_texts(tmp_path / row["file"])
    assert texts["Description"] == PROMPTS[0]
    meta = json.loads(texts["cxrdesk"])
    assert meta["prompt"] == PROMPTS[0] and meta["model"] == "effusion-pneumonia-model" and "edit" in meta
    ds = pydicom.dcmread(tmp_path / row["dicom"])
    assert "Prompt: " + PROMPTS[0] in ds.ImageComments
    # the leak check finds the answer in a normal export (so its silence on unknowns means something)
    with pytest.raises(AssertionError, match="effusion"):
        assert_no_leak([f"{k}={v}" for k, v in texts.items() if k != "Description"], PROMPTS[0])
    with pytest.raises(AssertionError, match="effusion"):
        assert_no_leak([t for t in dicom_texts(tmp_path / row["dicom"]) if not t.startswith("ImageComments")]
                       + [ds.ImageComments], PROMPTS[0])
    assert ds.SecondaryCaptureDeviceManufacturerModelName == "effusion-pneumonia-model"


def test_answer_key_csv(tmp_path):
    lesson = Lesson("t", [Case(prompt=PROMPTS[0], note="=cmd|' /C calc'!A0", seed=3), Case(prompt=PROMPTS[3]),
                          Case(film="f.png", answer="Right upper lobe collapse")])
    rows = answer_key_rows(lesson, [{"file": "case_01.png", "prompt": PROMPTS[0], "seed": 3},
                                    {"file": "case_02.png", "prompt": PROMPTS[3], "seed": 99},
                                    {"file": "case_03.png", "prompt": "Left lower lobe collapse", "seed": None}])
    write_answer_key(tmp_path / "answers.csv", rows)
    back = read_answer_key(tmp_path / "answers.csv")
    assert [r["answer"] for r in back] == ["Effusion", "Normal", "Right upper lobe collapse"]
    assert [r["normal"] for r in back] == ["abnormal", "normal", "abnormal"]
    assert back[0]["note"].startswith("'=")  # never a spreadsheet formula
    assert back[1]["seed"] == "99" and back[2]["seed"] == ""


# --------------------------------------------------------------------------------------------
# handout
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answers", ["after", "end"])
def test_handout_pptx(tmp_path, answers):
    from pptx import Presentation

    from cxrdesk.core.handout import HandoutCase, handout_slide_count, write_handout

    cases = [HandoutCase(np.full((64, 64), 0.5, np.float32), "Effusion", "Blunted angle"),
             HandoutCase(np.full((64, 64), 0.2, np.float32), "Normal")]
    path = write_handout(tmp_path / "h.pptx", "Pleural disease", cases, answers=answers)
    prs = Presentation(path)
    slides = list(prs.slides)
    assert len(slides) == handout_slide_count(2, answers) == (5 if answers == "after" else 6)

    def text(s):
        return " ".join(sh.text_frame.text for sh in s.shapes if sh.has_text_frame)

    def pictures(s):
        return [sh for sh in s.shapes if sh.shape_type == 13]
    assert "Pleural disease" in text(slides[0]) and "NOT FOR DIAGNOSIS" in text(slides[0])
    film_slides = [1, 3] if answers == "after" else [1, 2]
    answer_slides = [2, 4] if answers == "after" else [4, 5]
    for k, i in enumerate(film_slides):
        assert f"Case {k + 1}" in text(slides[i]) and "Answer" not in text(slides[i])
        assert "Effusion" not in text(slides[i]) and "Normal" not in text(slides[i])
        (pic,) = pictures(slides[i])
        from PIL import Image
        import io
        im = np.asarray(Image.open(io.BytesIO(pic.image.blob)))
        assert im.shape == (64, 64) and im.max() == 255 and (im == 0).any()  # the SYNTHETIC mark burned in
    assert "Answer: Effusion" in text(slides[answer_slides[0]]) and "Blunted angle" in text(slides[answer_slides[0]])
    assert "Answer: Normal" in text(slides[answer_slides[1]])
    if answers == "end":
        assert "Answers" in text(slides[3])
    with pytest.raises(ValueError):
        write_handout(tmp_path / "x.pptx", "t", cases, answers="never")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _run(argv, capsys):
    from cxrdesk.cli import main

    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_lesson_run_unknown_dicom_pptx(tmp_path, tiny_model_dir, capsys):
    from pptx import Presentation

    from cxrdesk.core.imaging.pngio import read_png, write_png

    edited = tmp_path / "edited.png"  # a film case: an edited film made earlier
    write_png(edited, np.full((64, 64), 0.4, np.float32), {"prompt": "Left apical pneumothorax", "seed": 5})
    lesson = tmp_path / "week1.toml"
    lesson.write_text('title = "Week 1"\nsteps = 2\n'
                      f'[[cases]]\nprompt = "{PROMPTS[0]}"\nseed = 11\nnote = "Look at the angles."\n'
                      f'[[cases]]\nprompt = "{PROMPTS[2]}"\n'
                      '[[cases]]\nfilm = "edited.png"\n', encoding="utf-8")
    out = tmp_path / "out"
    rc, so, se = _run(["lesson", "run", str(lesson), "-o", str(out), "--unknown", "--dicom", "--pptx",
                       "--answers", "end", "--model", str(tiny_model_dir), "--quiet"], capsys)
    assert rc == 0, se
    assert sorted(p.name for p in out.iterdir()) == ["answers.csv", "case_01.png", "case_02.png", "case_03.png",
                                                     "dicom", "lesson.pptx"]
    key = read_answer_key(out / "answers.csv")
    assert [r["answer"] for r in key] == ["Effusion", "Pneumonia", "Pneumothorax"]
    assert key[0]["seed"] == "11" and key[0]["note"] == "Look at the angles." and key[1]["seed"]
    prompts = [PROMPTS[0], PROMPTS[2], "Left apical pneumothorax"]
    for i, prompt in enumerate(prompts):
        assert_no_leak([f"{k}={v}" for k, v in png_texts(out / f"case_{i + 1:02d}.png").items()], prompt)
        assert_no_leak(dicom_texts(out / "dicom" / f"case_{i + 1:02d}.dcm"), prompt)
        assert key[i]["prompt"] == prompt
    assert len(Presentation(out / "lesson.pptx").slides) == 1 + 3 + 1 + 3
    # the same lesson without --unknown keeps the prompts; a fixed seed gives the same film
    out2 = tmp_path / "out2"
    rc, so, se = _run(["lesson", "run", str(lesson), "-o", str(out2), "--model", str(tiny_model_dir), "--quiet"],
                      capsys)
    assert rc == 0, se
    assert read_png(out2 / "case_01.png").metadata["prompt"] == PROMPTS[0]
    assert np.array_equal(read_png(out2 / "case_01.png").pixels, read_png(out / "case_01.png").pixels)
    assert not (out2 / "lesson.pptx").exists() and not (out2 / "dicom").exists()


def test_cli_lesson_errors_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    bad = tmp_path / "bad.toml"
    bad.write_text("title = 'x'\n[[cases]]\nprompt = 'a'\nanwser = 'b'\n")
    for argv, message in [
        (["lesson", "run", str(tmp_path / "none.toml"), "-o", str(out)], "lesson file not found"),
        (["lesson", "run", str(bad), "-o", str(out)], "unknown key 'anwser'"),
        (["lesson", "check", str(bad)], "unknown key 'anwser'"),
    ]:
        rc, so, se = _run(argv, capsys)
        assert rc == 2 and message in se and len(se.strip().splitlines()) == 1
    good = tmp_path / "good.txt"
    good.write_text("Normal chest radiograph\n")
    rc, so, se = _run(["lesson", "run", str(good), "-o", str(out), "--pptx", str(tmp_path / "x.ppt")], capsys)
    assert rc == 2 and ".pptx" in se
    assert not out.exists()
    rc, so, se = _run(["lesson", "check", str(good)], capsys)
    assert rc == 0 and "Normal chest radiograph  ->  Normal" in so


def test_generate_prompts_unknown_does_not_leak(tmp_path, tiny_model_dir, capsys):
    from cxrdesk.core.imaging.pngio import read_png

    prompts = tmp_path / "set.txt"
    prompts.write_text("# quiz\n" + PROMPTS[1] + "\n" + PROMPTS[2] + "\n")
    rc, so, se = _run(["generate", "--prompts", str(prompts), "-o", str(tmp_path / "q.png"), "--unknown",
                       "--dicom", str(tmp_path / "dcm"), "--steps", "2", "--model", str(tiny_model_dir), "--quiet"],
                      capsys)
    assert rc == 0, se
    for i, prompt in enumerate(PROMPTS[1:3]):
        assert_no_leak([f"{k}={v}" for k, v in png_texts(tmp_path / f"q_{i + 1:02d}.png").items()], prompt)
        assert_no_leak(dicom_texts(tmp_path / "dcm" / f"q_{i + 1:02d}.dcm"), prompt)
    key = read_answer_key(tmp_path / "q_answers.csv")
    assert [(r["case"], r["file"], r["answer"]) for r in key] == [
        ("1", "q_01.png", "Cardiomegaly, Edema"), ("2", "q_02.png", "Pneumonia")]
    # default: full provenance as before (the prompt in the PNG and in ImageComments), no answer key
    rc, so, se = _run(["generate", "--prompts", str(prompts), "-o", str(tmp_path / "p.png"), "--steps", "2",
                       "--dicom", str(tmp_path / "dcm2"), "--model", str(tiny_model_dir), "--quiet"], capsys)
    assert rc == 0, se
    assert read_png(tmp_path / "p_01.png").metadata["prompt"] == PROMPTS[1]
    import pydicom
    assert "Prompt: " + PROMPTS[2] in pydicom.dcmread(tmp_path / "dcm2" / "p_02.dcm").ImageComments
    assert not (tmp_path / "p_answers.csv").exists()


def test_quiz_scoring_rule_and_choices(tmp_path):
    from cxrdesk.core.lesson_export import write_quiz_results
    from cxrdesk.core.lessons import finding_choices, score_case

    eff, norm, custom = Case(prompt=PROMPTS[0]), Case(prompt=PROMPTS[3]), Case(prompt="x", answer="Collapse")
    assert score_case(norm, True) and not score_case(norm, False, "Effusion")
    assert score_case(eff, False, "Effusion") and score_case(eff, False, "effusion")
    assert not score_case(eff, True) and not score_case(eff, False, "") and not score_case(eff, False, "Mass")
    assert score_case(custom, False, "Collapse") and not score_case(custom, True)
    edema = Case(prompt=PROMPTS[1])  # two findings: either one scores
    assert score_case(edema, False, "Edema") and score_case(edema, False, "Cardiomegaly")
    lesson = Lesson("t", [eff, norm, custom, edema])
    choices = finding_choices(lesson, distractors=3)
    assert {"Effusion", "Collapse", "Cardiomegaly", "Edema"} <= set(choices)
    assert "Normal" not in choices and "No Finding" not in choices and len(choices) == 4 + 3 + 1  # "Cardiomegaly, Edema"
    write_quiz_results(tmp_path / "q.csv", [{"trainee": "Ann", "case": 1, "called": "normal", "correct": "yes"}])
    assert read_answer_key(tmp_path / "q.csv")[0]["trainee"] == "Ann"


def test_cli_film_only_lesson_needs_no_model_and_notes_stale_files(tmp_path, capsys):
    from cxrdesk.core.imaging.pngio import write_png

    write_png(tmp_path / "f.png", np.full((32, 32), 0.5, np.float32), {"prompt": "Right lower lobe pneumonia"})
    (tmp_path / "l.json").write_text(json.dumps({"title": "films", "cases": [{"film": "f.png", "note": "RLL"}]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "case_07.png").write_bytes(b"old")
    rc, so, se = _run(["lesson", "run", str(tmp_path / "l.json"), "-o", str(out), "--unknown", "--pptx",
                       "--model", str(tmp_path / "no-model-here"), "--quiet"], capsys)
    assert rc == 0, se
    assert "older case file(s) not in this lesson (case_07.png)" in se and (out / "case_07.png").exists()
    assert read_answer_key(out / "answers.csv")[0]["answer"] == "Pneumonia"
    assert_no_leak([f"{k}={v}" for k, v in png_texts(out / "case_01.png").items()], "Right lower lobe pneumonia")


# --------------------------------------------------------------------------------------------
# --n: a set of N cases from a shorter (or longer) lesson
# --------------------------------------------------------------------------------------------

def test_take_cases_first_n_then_cycles_with_new_seeds(tmp_path):
    from cxrdesk.core.lessons import MAX_SEED, take_cases

    lesson = Lesson("t", [Case(prompt=PROMPTS[0], seed=7, note="n0"), Case(prompt=PROMPTS[1]),
                          Case(prompt=PROMPTS[2], seed=MAX_SEED)])
    assert [c.prompt for c in take_cases(lesson, 2).cases] == PROMPTS[:2]
    assert [c.to_dict() for c in take_cases(lesson, 3).cases] == [c.to_dict() for c in lesson.cases]
    ten = take_cases(lesson, 10)
    assert ten.title == "t" and len(ten.cases) == 10 and len(lesson.cases) == 3  # the lesson itself unchanged
    assert [c.prompt for c in ten.cases] == [PROMPTS[i % 3] for i in range(10)]
    assert [c.seed for c in ten.cases[0::3]] == [7, 8, 9, 10]  # a fixed seed: S, S+1, S+2 ... each round
    assert [c.seed for c in ten.cases[1::3]] == [None] * 3  # no seed: random every time, as before
    assert [c.seed for c in ten.cases[2::3]] == [MAX_SEED, 0, 1]  # wraps inside the seed range
    assert ten.cases[3].note == "n0" and ten.cases[3].answer_text() == "Effusion"
    ten.cases[0].note = "changed"
    assert lesson.cases[0].note == "n0"  # copies, not the lesson's own cases
    # films are never repeated: the cycle goes on through the prompt cases only
    mixed = Lesson("m", [Case(prompt="a"), Case(film="f.png"), Case(prompt="b")])
    assert [c.prompt or c.film for c in take_cases(mixed, 6).cases] == ["a", "f.png", "b", "a", "b", "a"]
    films = Lesson("f", [Case(film="f.png"), Case(film="g.png")])
    assert len(take_cases(films, 2).cases) == 2
    with pytest.raises(LessonError, match="a film cannot be drawn again, so at most 2"):
        take_cases(films, 3)
    for bad in (0, -1, 101, True, 2.0):
        with pytest.raises(LessonError, match="from 1 to 100"):
            take_cases(lesson, bad)


def test_cli_lesson_run_n_makes_a_set_of_n(tmp_path, tiny_model_dir, capsys):
    from pptx import Presentation

    from cxrdesk.core.imaging.pngio import read_png

    prompts = tmp_path / "three.txt"
    prompts.write_text("# three cases\n" + "\n".join(PROMPTS[:3]) + "\n")
    out = tmp_path / "ten"
    rc, so, se = _run(["lesson", "run", str(prompts), "-o", str(out), "--n", "10", "--steps", "1", "--pptx",
                       "--model", str(tiny_model_dir), "--quiet"], capsys)
    assert rc == 0, se
    names = [f"case_{i:02d}.png" for i in range(1, 11)]
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["answers.csv", "lesson.pptx"])
    key = read_answer_key(out / "answers.csv")
    assert [r["case"] for r in key] == [str(i) for i in range(1, 11)] and [r["file"] for r in key] == names
    assert [r["prompt"] for r in key] == [PROMPTS[i % 3] for i in range(10)]
    assert [r["answer"] for r in key[:4]] == ["Effusion", "Cardiomegaly, Edema", "Pneumonia", "Effusion"]
    assert len({r["seed"] for r in key}) == 10  # every repeat drawn with a new seed
    for i, name in enumerate(names):
        assert read_png(out / name).metadata["prompt"] == PROMPTS[i % 3]
    assert not np.array_equal(read_png(out / "case_01.png").pixels, read_png(out / "case_04.png").pixels)
    assert len(Presentation(out / "lesson.pptx").slides) == 1 + 2 * 10
    assert so.count("seed=") == 10
    # --n below the lesson's length: its first N cases, in order
    out2 = tmp_path / "two"
    rc, so, se = _run(["lesson", "run", str(prompts), "-o", str(out2), "--n", "2", "--steps", "1",
                       "--model", str(tiny_model_dir), "--quiet"], capsys)
    assert rc == 0, se
    assert sorted(p.name for p in out2.iterdir()) == ["answers.csv", "case_01.png", "case_02.png"]
    assert [r["prompt"] for r in read_answer_key(out2 / "answers.csv")] == PROMPTS[:2]


def test_cli_lesson_run_bad_n_is_one_line_before_any_work(tmp_path, capsys):
    from cxrdesk.core.imaging.pngio import write_png

    prompts = tmp_path / "three.txt"
    prompts.write_text("\n".join(PROMPTS[:3]) + "\n")
    write_png(tmp_path / "f.png", np.full((32, 32), 0.5, np.float32), {"prompt": "Right lower lobe pneumonia"})
    films = tmp_path / "films.json"
    films.write_text(json.dumps({"title": "films", "cases": [{"film": "f.png"}]}))
    out = tmp_path / "out"
    no_model = str(tmp_path / "no-model-here")  # a model would be loaded only after every check
    for argv, message in [
        ([str(prompts), "--n", "0"], "--n must be from 1 to 100 cases, not 0"),
        ([str(prompts), "--n", "-4"], "--n must be from 1 to 100 cases, not -4"),
        ([str(prompts), "--n", "101"], "--n must be from 1 to 100 cases, not 101"),
        ([str(tmp_path / "none.txt"), "--n", "0"], "--n must be from 1 to 100"),
        ([str(films), "--n", "2"], "a film cannot be drawn again, so at most 1 case(s)"),
    ]:
        rc, so, se = _run(["lesson", "run", *argv, "-o", str(out), "--model", no_model, "--quiet"], capsys)
        assert rc == 2, se
        assert se.startswith("cxrdesk: error: ") and len(se.strip().splitlines()) == 1
        assert message in se and "Traceback" not in se and so == ""
        assert not out.exists()
    with pytest.raises(SystemExit) as ei:  # not a number at all: argparse's usage error, exit 2
        _run(["lesson", "run", str(prompts), "-o", str(out), "--n", "ten"], capsys)
    assert ei.value.code == 2 and "--n must be a whole number" in capsys.readouterr().err
