import pytest
import torch

from clothes_retrieval.retrieval.head import CGDHead


@pytest.mark.parametrize(
    "descriptors", [("gem",), ("gem", "mac"), ("spoc", "mac", "gem"), ("mac", "spoc")]
)
def test_cgd_shapes_and_unit_norms(descriptors):
    torch.manual_seed(0)
    head = CGDHead(16, descriptors, dim=24, num_classes=5).train()
    x = torch.rand(4, 16, 3, 3)  # (B, C, H, W)
    embedding, logits = head(x)
    assert embedding.shape == (4, 24) and logits.shape == (4, 5)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(4))
    part = 24 // len(descriptors)
    for i in range(len(descriptors)):  # every part is normalised before the concatenation
        chunk = embedding[:, i * part : (i + 1) * part]
        torch.testing.assert_close(chunk.norm(dim=1), torch.full((4,), len(descriptors) ** -0.5))


def test_classifier_uses_the_first_descriptor():
    head = CGDHead(8, ("mac", "gem"), dim=8, num_classes=3).eval()
    x = torch.rand(2, 8, 2, 2)
    expected = head.classifier(x.amax(dim=(2, 3)))
    torch.testing.assert_close(head(x)[1], expected)


def test_no_classifier_and_bad_arguments():
    assert CGDHead(8, ("gem",), dim=8)(torch.rand(2, 8, 2, 2))[1] is None
    with pytest.raises(ValueError, match="divisible"):
        CGDHead(8, ("gem", "mac", "spoc"), dim=8)
    with pytest.raises(ValueError, match="repeat"):
        CGDHead(8, ("gem", "gem"), dim=8)
