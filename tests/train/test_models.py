import os

import pytest
import timm
import torch

from taylorglo.train import create_model, list_registered_models

REGISTERED = [
    "taylorglo_smallcnn",
    "taylorglo_allcnn_c",
    "taylorglo_resnet20",
    "taylorglo_resnet32",
    "taylorglo_resnet56",
    "taylorglo_cnn1d",
]


def test_models_are_in_timms_registry():
    assert set(REGISTERED) <= set(timm.list_models("taylorglo_*"))
    assert set(list_registered_models()) == set(REGISTERED)


def test_timm_is_imported_offline():
    assert os.environ.get("HF_HUB_OFFLINE") is not None


@pytest.mark.parametrize("name", ["taylorglo_smallcnn", "taylorglo_allcnn_c", "taylorglo_resnet20"])
@pytest.mark.parametrize("shape, classes", [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_timm_create_model_builds_for_each_input_size(name, shape, classes):
    model = timm.create_model(name, pretrained=False, num_classes=classes, in_chans=shape[0])
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes) and torch.isfinite(out).all()


def test_resnet_depths_match_the_cifar_family():
    def convs(m):
        return sum(isinstance(x, torch.nn.Conv2d) and x.kernel_size == (3, 3) for x in m.modules())

    # 6n+2 layers: 6n 3x3 convs in the blocks, the stem conv, the classifier
    assert convs(create_model("taylorglo_resnet20", 10, 3)) == 19
    assert convs(create_model("taylorglo_resnet56", 10, 3)) == 55
    n20 = sum(p.numel() for p in create_model("taylorglo_resnet20", 10, 3).parameters())
    assert 0.26e6 < n20 < 0.29e6  # He et al.: 0.27M


def test_allcnn_c_has_the_paper_layout():
    model = create_model("taylorglo_allcnn_c", 10, 3)
    channels = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert channels == [96, 96, 96, 192, 192, 192, 192, 192, 10]


def test_any_timm_model_by_name_gets_classes_and_channels():
    model = create_model("resnet10t", num_classes=7, in_chans=1)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 28, 28)).shape == (1, 7)


def test_unknown_model_is_a_value_error_with_suggestions():
    with pytest.raises(ValueError, match=r"unknown model 'taylorglo_smallcn'.*taylorglo_smallcnn"):
        create_model("taylorglo_smallcn", 10, 1)


def test_registered_models_refuse_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("taylorglo_smallcnn", pretrained=True)
