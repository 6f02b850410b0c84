"""The optional auxiliary CTC loss (config.ctc_loss_weight), used by the CPU-budget default to align text and speech."""

import pytest
import torch
from model_helpers import DiTARModelTester

from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration


@pytest.fixture
def tester():
    return DiTARModelTester()


def test_no_ctc_head_by_default(tester):
    model = tester.get_model()
    assert model.ctc_head is None
    assert not any(name.startswith("ctc_head") for name, _ in model.named_parameters())
    torch.manual_seed(0)
    assert model(**tester.prepare_inputs()).ctc_loss is None


def test_ctc_loss_is_added_with_its_weight_and_trains_the_head(tester):
    model = tester.get_model(ctc_loss_weight=0.5)
    model.train()
    inputs = tester.prepare_inputs()
    torch.manual_seed(0)
    out = model(**inputs)
    assert out.ctc_loss is not None and torch.isfinite(out.ctc_loss)
    torch.testing.assert_close(out.loss, out.diffusion_loss + out.stop_loss + 0.5 * out.ctc_loss)
    out.loss.backward()
    assert model.ctc_head.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_ctc_loss_depends_on_the_transcript(tester):
    model = tester.get_model(ctc_loss_weight=1.0).eval()
    inputs = tester.prepare_inputs()
    torch.manual_seed(0)
    right = model(**inputs).ctc_loss
    wrong = dict(inputs, input_ids=(inputs["input_ids"] + 1) % model.config.text_config.vocab_size)
    torch.manual_seed(0)
    assert not torch.allclose(model(**wrong).ctc_loss, right)


@pytest.mark.parametrize("position, columns", [("patch", slice(1, None)), ("prediction", slice(None, -1))])
def test_ctc_position_picks_the_backbone_outputs_it_reads(tester, position, columns):
    """ "patch": the outputs at the patches (hidden[:, 1:]); "prediction": the outputs that predict them
    (hidden[:, :-1], start-of-speech included), i.e. what LocDiT is conditioned on."""
    model = tester.get_model(ctc_loss_weight=1.0, ctc_position=position).eval()
    inputs = tester.prepare_inputs()
    torch.manual_seed(0)
    out = model(**inputs)
    _, patch_mask = model.patchify(inputs["speech_features"], inputs.get("speech_attention_mask"))
    expected = model._ctc_loss(
        out.speech_hidden_states[:, columns],
        patch_mask.sum(1),
        inputs["input_ids"],
        inputs.get("attention_mask", torch.ones_like(inputs["input_ids"])),
    )
    torch.testing.assert_close(out.ctc_loss, expected)


def test_the_two_ctc_positions_differ(tester):
    losses = []
    for position in ("patch", "prediction"):
        torch.manual_seed(0)
        model = tester.get_model(ctc_loss_weight=1.0, ctc_position=position).eval()
        torch.manual_seed(1)
        losses.append(model(**tester.prepare_inputs()).ctc_loss)
    assert not torch.allclose(*losses)


def test_text_longer_than_the_speech_allows_contributes_zero_not_inf(tester):
    model = tester.get_model(ctc_loss_weight=1.0, ctc_frames_per_patch=1)
    inputs = tester.prepare_inputs()
    inputs["speech_features"] = inputs["speech_features"][:, :2]  # one patch for a whole sentence
    inputs["speech_attention_mask"] = torch.ones_like(inputs["speech_attention_mask"][:, :2])
    torch.manual_seed(0)
    out = model(**inputs)
    assert torch.isfinite(out.loss)


def test_return_tuple_appends_the_ctc_loss(tester):
    model = tester.get_model(ctc_loss_weight=0.1)
    torch.manual_seed(0)
    as_tuple = model(**tester.prepare_inputs(), return_dict=False)
    torch.manual_seed(0)
    as_dict = model(**tester.prepare_inputs())
    assert len(as_tuple) == 6
    torch.testing.assert_close(as_tuple[-1], as_dict.ctc_loss)


@pytest.mark.parametrize("bad", [{"ctc_loss_weight": -0.1}, {"ctc_frames_per_patch": 0}, {"ctc_position": "next"}])
def test_invalid_ctc_settings(tester, bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        tester.get_config(**bad)


def test_a_saved_model_gains_a_fresh_ctc_head_when_fine_tuned_with_one(tester, tmp_path):
    """What examples/train.py --init-from does when the run config turns the CTC loss on."""
    base = tester.get_model()
    base.save_pretrained(tmp_path)
    config = DiTARConfig.from_pretrained(tmp_path)
    config.ctc_loss_weight = 0.1
    model = DiTARForConditionalGeneration.from_pretrained(tmp_path, config=config)
    assert model.ctc_head is not None
    torch.testing.assert_close(model.stop_head.weight, base.stop_head.weight)
