from dataclasses import replace

import pytest
import torch

from openkws.models.conformer import Conformer, ConformerConfig, subsampled_lengths

TINY = ConformerConfig(d_model=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=5, dropout=0.0,
                       subsampling_channels=8)


def test_shapes_and_subsampling():
    model = Conformer(TINY).eval()
    feats = torch.randn(3, 101, 80)
    out, lengths = model(feats, torch.tensor([101, 60, 7]))
    assert out.shape == (3, subsampled_lengths(torch.tensor(101)).item(), 32)
    assert lengths.tolist() == [24, 14, 1]
    assert out[1, 14:].abs().sum() == 0  # padded frames are zero


def test_padding_does_not_change_valid_outputs():
    torch.manual_seed(0)
    model = Conformer(TINY).eval()
    x = torch.randn(1, 60, 80)
    alone, n = model(x, torch.tensor([60]))
    padded = torch.cat([x, torch.randn(1, 40, 80)], dim=1)
    other = torch.randn(1, 100, 80)
    batch, lengths = model(torch.cat([padded, other]), torch.tensor([60, 100]))
    torch.testing.assert_close(batch[0, : n[0]], alone[0, : n[0]], atol=1e-5, rtol=1e-4)


def test_very_short_input_is_padded_not_crashing():
    model = Conformer(TINY).eval()
    out, lengths = model(torch.randn(2, 3, 80), torch.tensor([3, 2]))
    assert lengths.tolist() == [0, 0] and torch.isfinite(out).all()


def test_default_size_is_ced_sized():
    n = sum(p.numel() for p in Conformer().parameters())
    assert 3.0e6 < n < 3.5e6


HAMA_TINY = ConformerConfig(d_model=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0,
                            subsampling="conv1d", positional="none", conv_norm="none")


def test_default_keys_are_unchanged_and_options_change_only_their_parts():
    keys = set(Conformer(TINY).state_dict())
    assert {"subsampling.conv.0.weight", "subsampling.proj.weight", "blocks.0.conv.depth_norm.weight"} <= keys
    hama_keys = set(Conformer(HAMA_TINY).state_dict())
    assert {"subsampling.conv.weight", "subsampling.conv.bias"} <= hama_keys
    assert not any("depth_norm" in k for k in hama_keys)
    assert {k for k in keys if k.startswith("blocks.")} - {k for k in hama_keys if k.startswith("blocks.")} \
        == {f"blocks.{i}.conv.depth_norm.{p}" for i in range(2) for p in ("weight", "bias")}


def test_conv1d_subsampling_lengths_and_factor():
    model = Conformer(HAMA_TINY).eval()
    assert model.subsampling_factor == 2 and Conformer(TINY).subsampling_factor == 4
    out, lengths = model(torch.randn(3, 101, 80), torch.tensor([101, 60, 1]))
    assert out.shape == (3, 51, 32) and lengths.tolist() == [51, 30, 1]
    assert model.output_lengths(101) == 51 and model.output_lengths(0) == 0
    assert Conformer(TINY).output_lengths(101) == 24
    assert Conformer(TINY).output_lengths(torch.tensor([101, 7])).tolist() == [24, 1]
    assert out[1, 30:].abs().sum() == 0


def test_conv1d_padding_does_not_change_valid_outputs():
    torch.manual_seed(0)
    model = Conformer(HAMA_TINY).eval()
    for n in (59, 60):  # odd: the stem's padding reaches one frame past the clip's end
        x = torch.randn(1, n, 80)
        alone, m = model(x, torch.tensor([n]))
        batch, lengths = model(torch.cat([torch.cat([x, torch.randn(1, 100 - n, 80)], 1), torch.randn(1, 100, 80)]),
                               torch.tensor([n, 100]))
        assert lengths[0] == m[0]
        torch.testing.assert_close(batch[0, : m[0]], alone[0, : m[0]], atol=1e-5, rtol=1e-4)


def test_unknown_option_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="subsampling"):
        ConformerConfig(subsampling="conv3d")
    with pytest.raises(ValueError, match="conv_norm"):
        ConformerConfig(conv_norm="batch")


def test_hama_shape_has_hama_parameter_count():
    from openkws.models.conformer import hama_conformer_config

    n = sum(p.numel() for p in Conformer(hama_conformer_config()).parameters())
    assert n == 2_004_095 - 27_695  # hama's 2,004,095 learned values less its 144 -> 191 output layer


def test_keep_layer_returns_the_output_of_that_block():
    # the hidden output of block k is what a k-block Conformer with the same weights outputs
    torch.manual_seed(0)
    model = Conformer(TINY).eval()
    first = Conformer(replace(TINY, num_layers=1)).eval()
    first.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("blocks.1.")})
    feats, lengths = torch.randn(2, 61, 80), torch.tensor([61, 33])
    out, n, hidden = model(feats, lengths, keep_layer=1)
    ref, ref_n = first(feats, lengths)
    torch.testing.assert_close(hidden, ref)
    assert torch.equal(n, ref_n) and hidden[1, int(n[1]):].abs().sum() == 0
    torch.testing.assert_close(out, model(feats, lengths)[0])
    with pytest.raises(ValueError, match="keep_layer must be in 0..2"):
        model(feats, lengths, keep_layer=3)
