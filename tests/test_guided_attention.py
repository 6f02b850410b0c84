"""Guided attention: the probabilities AttentionReader recomputes equal the backbone's own, the penalty has the
diagonal shape, the loss trains the guided heads and nothing else changes when it is off."""

import pytest
import torch
from model_helpers import DiTARModelTester

from modeling_ditar import DiTARConfig
from modeling_ditar.guided_attention import AttentionReader, attention_rows, diagonal_penalty

HEADS = [[0, 1], [1, 3]]


@pytest.mark.parametrize("backbone", ["qwen2", "llama"])
def test_reader_matches_the_backbone_attention_weights(backbone):
    tester = DiTARModelTester(backbone=backbone)
    model = tester.get_model()
    lm = model.language_model
    lm.config._attn_implementation = "eager"  # the only kernel that returns its probabilities
    torch.manual_seed(0)
    batch, length = 2, 9
    embeds = torch.randn(batch, length, lm.config.hidden_size)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    positions = torch.arange(length)[None].expand(batch, -1)
    with torch.no_grad(), AttentionReader(lm, [tuple(h) for h in HEADS]) as reader:
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_attentions=True)
    rows = torch.arange(length)[None].expand(batch, -1)
    for (layer, head), (q, k) in reader.queries_keys().items():
        ours = attention_rows(q, k, rows, mask)
        theirs = out.attentions[layer][:, head]
        real = mask.bool()[:, :, None]  # padded query rows are not compared
        torch.testing.assert_close(
            ours.masked_fill(~real, 0), theirs.float().masked_fill(~real, 0), atol=1e-5, rtol=1e-4
        )


def test_penalty_is_zero_on_the_diagonal_and_one_off_the_text():
    text_len, num_rows = torch.tensor([4]), torch.tensor([4])
    w = diagonal_penalty(text_len, num_rows, rows=4, keys=10, sigma=0.2)[0]  # [R, S]
    assert torch.allclose(torch.diagonal(w[:, :4]), torch.zeros(4))
    assert bool((w[:, 4:] == 1).all())  # speech keys
    assert w[0, 3] > w[0, 1] > w[0, 0]  # grows away from the diagonal


def test_guided_loss_is_in_the_total_and_trains_only_when_enabled():
    tester = DiTARModelTester()
    inputs = tester.prepare_inputs()
    plain = tester.get_model().train()
    torch.manual_seed(0)
    base = plain(**inputs)
    assert base.guided_attention_loss is None

    guided = tester.get_model(guided_attention_weight=0.5, guided_attention_heads=HEADS).train()
    torch.manual_seed(0)
    out = guided(**inputs)
    assert 0.0 < float(out.guided_attention_loss.detach()) <= 1.0
    torch.testing.assert_close(out.loss, base.loss + 0.5 * out.guided_attention_loss)
    out.guided_attention_loss.backward()
    q_grad = guided.language_model.layers[1].self_attn.q_proj.weight.grad
    assert q_grad is not None and q_grad.abs().sum() > 0  # the guided layer's queries learn from it
    assert guided.locdit.out_proj.weight.grad is None  # LocDiT does not


def test_guided_loss_falls_when_optimised():
    tester = DiTARModelTester()
    inputs = tester.prepare_inputs()
    model = tester.get_model(guided_attention_weight=1.0, guided_attention_heads=[[1, 0]]).train()
    optimizer = torch.optim.Adam(model.language_model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**inputs).guided_attention_loss
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"guided_attention_weight": 0.1}, "guided_attention_heads"),
        ({"guided_attention_weight": -1.0, "guided_attention_heads": HEADS}, "guided_attention_weight"),
        ({"guided_attention_heads": [[1]]}, "guided_attention_heads"),
        ({"guided_attention_heads": [], "guided_attention_weight": 0.1}, "guided_attention_heads"),
        ({"guided_attention_sigma": 0.0}, "guided_attention_sigma"),
    ],
)
def test_bad_guided_attention_settings_are_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        DiTARConfig(**overrides)


@pytest.mark.parametrize("heads, match", [([[5, 0]], "layer 5 does not exist"), ([[0, 9]], "head 9 does not exist")])
def test_heads_outside_the_backbone_are_clear_errors(heads, match):
    model = DiTARModelTester().get_model(guided_attention_weight=0.1, guided_attention_heads=heads).train()
    with pytest.raises(ValueError, match=match):
        model(**DiTARModelTester().prepare_inputs())
