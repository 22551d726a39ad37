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
