"""The model zoo: parameter counts equal to Keras' (and torchvision's for ResNet18/34), the output
shape of every block from the papers' tables, Keras' layer names and layer counts, the
include_top/pooling/classes/input_shape arguments, bad arguments, and small models that train."""

import numpy as np
import pytest

from cnnkit import applications, layers, models, optimizers
from cnnkit.layers.base import clear_session

# keras.applications' totals with the defaults (224x224x3, 1000 classes, include_top=True) and the
# number of entries in keras' model.layers (the input layer included)
KERAS = {
    "VGG16": (138_357_544, 23), "VGG19": (143_667_240, 26), "ResNet50": (25_636_712, 177),
    "ResNet101": (44_707_176, 347), "ResNet152": (60_419_944, 517), "DenseNet121": (8_062_504, 429),
    "DenseNet169": (14_307_880, 597), "DenseNet201": (20_242_984, 709),
}
_built = {}


def built(name):
    """Each default model is built once per session (VGG19 alone holds 143M weights)."""
    if name not in _built:
        _built.clear()  # keep at most one big model alive
        _built[name] = getattr(applications, name)()
    return _built[name]


def shape_of(model, name):
    return model.get_layer(name).output_shape[1:]


@pytest.mark.parametrize("name", sorted(KERAS))
def test_parameter_counts_and_layer_counts_equal_keras(name):
    model = built(name)
    params, n_layers = KERAS[name]
    assert model.count_params() == params
    assert len(model.layers) == n_layers
    assert model.outputs[0].shape == (None, 1000)
    assert model.name == name.lower()


def test_vgg19_blocks():
    m = built("VGG19")
    assert [layer.name for layer in m.layers if layer.name.startswith("block3")] == \
        ["block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4", "block3_pool"]
    assert shape_of(m, "block5_conv4") == (14, 14, 512) and shape_of(m, "block5_pool") == (7, 7, 512)


def test_vgg16_blocks():
    m = built("VGG16")
    for b, (size, ch) in enumerate([(112, 64), (56, 128), (28, 256), (14, 512), (7, 512)], start=1):
        assert shape_of(m, f"block{b}_conv1") == (2 * size, 2 * size, ch)
        assert shape_of(m, f"block{b}_pool") == (size, size, ch)
    assert shape_of(m, "flatten") == (25088,) and shape_of(m, "fc1") == (4096,) and shape_of(m, "fc2") == (4096,)
    # conv weights: 3x3 x in x out + out, by hand
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv = sum(9 * a * b + b for a, b in zip(chans[:-1], chans[1:]))
    assert conv + 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000 == 138_357_544


def _resnet_stage_shapes(model, blocks, out_channels):
    assert shape_of(model, "conv1_pad") == (230, 230, 3)
    assert shape_of(model, "conv1_conv") == (112, 112, 64)
    assert shape_of(model, "pool1_pad") == (114, 114, 64)
    assert shape_of(model, "pool1_pool") == (56, 56, 64)
    for stage, (n, size, ch) in enumerate(zip(blocks, (56, 28, 14, 7), out_channels), start=2):
        for i in range(1, n + 1):
            assert shape_of(model, f"conv{stage}_block{i}_out") == (size, size, ch), (stage, i)
        assert f"conv{stage}_block{n + 1}_out" not in [layer.name for layer in model.layers]
    assert shape_of(model, "avg_pool") == (out_channels[-1],)


@pytest.mark.parametrize("name,blocks", [("ResNet50", (3, 4, 6, 3)), ("ResNet101", (3, 4, 23, 3)),
                                         ("ResNet152", (3, 8, 36, 3))])
def test_bottleneck_resnets_blocks_and_keras_names(name, blocks):
    m = built(name)
    _resnet_stage_shapes(m, blocks, (256, 512, 1024, 2048))
    names = [layer.name for layer in m.layers]
    assert names[1:7] == ["conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pad", "pool1_pool"]
    assert names[-2:] == ["avg_pool", "predictions"]
    block = [n for n in names if n.startswith("conv3_block1_")]  # (cnnkit orders a block's branches
    assert sorted(block) == sorted(["conv3_block1_0_conv", "conv3_block1_0_bn", "conv3_block1_1_conv",
                                 "conv3_block1_1_bn", "conv3_block1_1_relu", "conv3_block1_2_conv",
                                 "conv3_block1_2_bn", "conv3_block1_2_relu", "conv3_block1_3_conv",
                                 "conv3_block1_3_bn", "conv3_block1_add", "conv3_block1_out"])
    conv = m.get_layer("conv3_block1_1_conv")  # Keras v1: the stride sits in the first 1x1 convolution
    assert conv.strides == (2, 2) and conv.kernel_size == (1, 1) and conv.use_bias
    assert m.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert m.get_layer("conv1_bn").epsilon == pytest.approx(1.001e-5)


def _torchvision_count(name):
    """In a child process: importing torch here would slow every later cnnkit kernel of this process
    (its OpenMP runtime and cnnkit's compete for the cores)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        pytest.skip("needs torch and torchvision")
    benchmarks = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    code = (f"import sys; sys.path.insert(0, {benchmarks!r}); from _timing import torchvision_models; "
            f"print(sum(p.numel() for p in torchvision_models()[{name!r}](weights=None).parameters()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("name,blocks,trainable", [("ResNet18", (2, 2, 2, 2), 11_689_512),
                                                   ("ResNet34", (3, 4, 6, 3), 21_797_672)])
def test_basic_resnets(name, blocks, trainable):
    clear_session()
    m = getattr(applications, name)()
    _resnet_stage_shapes(m, blocks, (64, 128, 256, 512))
    assert sum(v.size for v in m.trainable_weights) == trainable  # torchvision's published count
    bn_channels = sum(v.size for v in m.non_trainable_weights) // 2  # moving mean + variance per channel
    # conv1 + 2 per block + one per projection shortcut (stages 3-5)
    assert bn_channels == 64 + sum(2 * n * c for n, c in zip(blocks, (64, 128, 256, 512))) + 128 + 256 + 512
    assert m.get_layer("conv2_block1_1_conv").strides == (1, 1)
    assert "conv2_block1_0_conv" not in [layer.name for layer in m.layers]  # 64 -> 64: identity shortcut
    assert m.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert m.get_layer("conv3_block1_0_conv").kernel_size == (1, 1)


def test_basic_resnet_counts_match_torchvision():
    clear_session()
    assert sum(v.size for v in applications.ResNet18().trainable_weights) == _torchvision_count("resnet18")
    assert sum(v.size for v in applications.ResNet34().trainable_weights) == _torchvision_count("resnet34")


@pytest.mark.parametrize("name,blocks", [("DenseNet121", (6, 12, 24, 16)), ("DenseNet169", (6, 12, 32, 32)),
                                         ("DenseNet201", (6, 12, 48, 32))])
def test_densenet_blocks(name, blocks):
    m = built(name)
    assert shape_of(m, "conv1_conv") == (112, 112, 64) and shape_of(m, "pool1") == (56, 56, 64)
    channels, size = 64, 56
    for stage, n in enumerate(blocks, start=2):
        for i in range(1, n + 1):
            assert shape_of(m, f"conv{stage}_block{i}_1_conv") == (size, size, 128)
            assert shape_of(m, f"conv{stage}_block{i}_2_conv") == (size, size, 32)
            assert shape_of(m, f"conv{stage}_block{i}_concat") == (size, size, channels + 32 * i)
        channels += 32 * n
        if stage < 5:
            channels //= 2
            size //= 2
            assert shape_of(m, f"pool{stage}_conv") == (2 * size, 2 * size, channels)
            assert shape_of(m, f"pool{stage}_pool") == (size, size, channels)
    assert shape_of(m, "relu") == (7, 7, channels) and shape_of(m, "avg_pool") == (channels,)
    assert m.get_layer("conv2_block1_1_conv").use_bias is False


# Table 1 of Szegedy et al. 2014: output size and channels, then #1x1, #3x3r, #3x3, #5x5r, #5x5, pool proj
GOOGLENET = {
    "3a": (28, 256, 64, 96, 128, 16, 32, 32), "3b": (28, 480, 128, 128, 192, 32, 96, 64),
    "4a": (14, 512, 192, 96, 208, 16, 48, 64), "4b": (14, 512, 160, 112, 224, 24, 64, 64),
    "4c": (14, 512, 128, 128, 256, 24, 64, 64), "4d": (14, 528, 112, 144, 288, 32, 64, 64),
    "4e": (14, 832, 256, 160, 320, 32, 128, 128), "5a": (7, 832, 256, 160, 320, 32, 128, 128),
    "5b": (7, 1024, 384, 192, 384, 48, 128, 128),
}


def test_googlenet_follows_table_1():
    clear_session()
    m = applications.GoogLeNet()
    assert applications.InceptionV1 is applications.GoogLeNet
    assert shape_of(m, "conv1_7x7_s2") == (112, 112, 64) and shape_of(m, "pool1_3x3_s2") == (56, 56, 64)
    assert shape_of(m, "conv2_3x3") == (56, 56, 192) and shape_of(m, "pool2_3x3_s2") == (28, 28, 192)
    assert shape_of(m, "pool3_3x3_s2") == (14, 14, 480) and shape_of(m, "pool4_3x3_s2") == (7, 7, 832)
    total, cin = 7 * 7 * 3 * 64 + 64 + 64 * 64 + 64 + 9 * 64 * 192 + 192, 192
    for key, (size, cout, f1, r3, f3, r5, f5, pp) in GOOGLENET.items():
        assert shape_of(m, f"inception_{key}_output") == (size, size, cout)
        assert f1 + f3 + f5 + pp == cout
        module = (cin * f1 + f1) + (cin * r3 + r3) + (9 * r3 * f3 + f3) + (cin * r5 + r5) + (25 * r5 * f5 + f5) \
            + (cin * pp + pp)
        got = sum(m.get_layer(f"inception_{key}_{s}").count_params()
                  for s in ("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"))
        assert got == module, key
        total += module
        cin = cout
    total += 1024 * 1000 + 1000
    assert m.count_params() == total == 6_998_552
    assert m.outputs[0].shape == (None, 1000)


def test_inception_module_is_a_reusable_block(rng):
    clear_session()
    inp = layers.Input((9, 11, 5))
    x = applications.inception_module(inp, 3, 2, 4, 1, 2, 5, name="mix1")
    x = applications.inception_module(x, 2, 2, 2, 2, 2, 2, name="mix2")
    m = models.Model(inp, layers.GlobalAveragePooling2D()(x))
    assert shape_of(m, "mix1_output") == (9, 11, 14) and m.outputs[0].shape == (None, 8)
    assert m.predict(rng.random((2, 9, 11, 5), dtype=np.float32), verbose=0).shape == (2, 8)


@pytest.mark.parametrize("size,pad", [(32, "valid"), (28, "same")])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_lenet5(size, pad, activation):
    clear_session()
    m = applications.LeNet5(input_shape=(size, size, 1), activation=activation)
    assert [shape_of(m, n) for n in ("c1", "s2", "c3", "s4", "c5", "f6", "predictions")] == \
        [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (1, 1, 120), (84,), (10,)]
    assert m.get_layer("c1").padding == pad and m.get_layer("c3").activation.name == activation
    # C1 156, C3 2416, C5 48120, F6 10164, output 850 (LeCun et al. 1998, C3 fully connected)
    assert m.count_params() == 156 + 2416 + 48120 + 10164 + 850 == 61_706


def test_alexnet():
    clear_session()
    m = applications.AlexNet()
    assert [shape_of(m, n) for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] == \
        [(55, 55, 96), (27, 27, 96), (27, 27, 256), (13, 13, 256), (13, 13, 384), (13, 13, 384), (13, 13, 256),
         (6, 6, 256)]
    assert m.count_params() == (11 * 11 * 3 * 96 + 96 + 25 * 96 * 256 + 256 + 9 * 256 * 384 + 384
                                + 9 * 384 * 384 + 384 + 9 * 384 * 256 + 256 + 9216 * 4096 + 4096
                                + 4096 * 4096 + 4096 + 4096 * 1000 + 1000) == 62_378_344


@pytest.mark.parametrize("pooling,shape", [(None, (2, 2, 2048)), ("avg", (2048,)), ("max", (2048,))])
def test_no_top_and_pooling(pooling, shape):
    clear_session()
    m = applications.ResNet50(include_top=False, input_shape=(64, 64, 3), pooling=pooling)
    assert m.outputs[0].shape[1:] == shape
    assert "predictions" not in [layer.name for layer in m.layers]
    assert m.count_params() == 25_636_712 - (2048 * 1000 + 1000)


def test_other_sizes_and_classes(rng):
    clear_session()
    m = applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    assert m.outputs[0].shape == (None, 10) and shape_of(m, "conv5_block3_out") == (2, 2, 2048)
    v = applications.VGG16(input_shape=(32, 32, 3), classes=7, classifier_activation=None)
    assert shape_of(v, "flatten") == (512,) and v.outputs[0].shape == (None, 7)
    assert v.count_params() == 138_357_544 - 25088 * 4096 + 512 * 4096 - 4096 * 1000 - 1000 + 4096 * 7 + 7
    d = applications.DenseNet121(include_top=False, input_shape=(None, None, 3), pooling="avg")
    assert d.outputs[0].shape == (None, 1024)
    assert d.predict(rng.random((1, 40, 48, 3), dtype=np.float32), verbose=0).shape == (1, 1024)
    inp = layers.Input((48, 48, 3))
    g = applications.GoogLeNet(input_tensor=inp, include_top=False, pooling="max")
    assert g.inputs[0] is inp and g.outputs[0].shape == (None, 1024)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooling"):
        applications.ResNet18(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="classes=1000"):
        applications.VGG16(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="at least 32"):
        applications.ResNet50(include_top=False, input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="input_shape"):
        applications.VGG16(input_shape=(224, 224))
    with pytest.raises(ValueError, match="known height and width"):
        applications.VGG16(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="imagenet.*not available"):
        applications.ResNet18(weights="imagenet")
    with pytest.raises(ValueError, match="weights must be"):
        applications.ResNet50(weights=3)
    with pytest.raises(ValueError, match="classes"):
        applications.DenseNet121(classes=0)
    with pytest.raises(ValueError, match="32x32 images"):
        applications.LeNet5(input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match="activation"):
        applications.LeNet5(activation="sigmoid")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        applications.LeNet5(weights="/nonexistent/lenet.cnnkit")


def test_imagenet_without_file_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNKIT_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        applications.ResNet50(weights="imagenet", include_top=False, input_shape=(32, 32, 3))
    msg = str(e.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert str(tmp_path / ".cnnkit" / "weights") in msg and "does not download" in msg


@pytest.mark.parametrize("build", [
    lambda: applications.ResNet18(input_shape=(32, 32, 3), classes=3),
    lambda: applications.LeNet5(input_shape=(32, 32, 3), classes=3),
    lambda: applications.GoogLeNet(input_shape=(32, 32, 3), classes=3, dropout=0.0),
    lambda: applications.DenseNet121(input_shape=(32, 32, 3), classes=3)], ids=["resnet18", "lenet5", "googlenet",
                                                                             "densenet121"])
def test_small_zoo_models_train(rng, build):
    """Adam steps on a fixed batch lower the training loss (forward, backward and the update through
    every block type: residual adds, concatenations, inception branches). The training-mode loss is
    compared: after a few steps BatchNormalization's moving statistics are still near their start."""
    clear_session()
    from cnnkit.utils import set_random_seed

    set_random_seed(int(rng.integers(2**31)))
    x = rng.random((4, 32, 32, 3), dtype=np.float32)
    y = np.array([0, 1, 2, 1])
    m = build()
    m.compile(optimizer=optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    losses = [float(m.train_on_batch(x, y)) for _ in range(6)]
    assert np.all(np.isfinite(losses)) and min(losses[-2:]) < losses[0], (m.name, losses)


def test_gpu_request_without_a_gpu_is_one_clear_error():
    import cnnkit

    if cnnkit.device.gpu_available():
        pytest.skip("a GPU is usable here")
    clear_session()
    m = applications.LeNet5()
    with pytest.raises(RuntimeError, match="GPU was requested but cannot be used"):
        m.to("gpu")
    assert m.predict(np.zeros((1, 32, 32, 1), np.float32) + 0.5, verbose=0).shape == (1, 10)  # still on the CPU


@pytest.mark.gpu
def test_zoo_models_on_the_gpu_match_the_cpu(xp, rng):
    if xp is np:
        pytest.skip("the GPU case")
    for build in (lambda: applications.ResNet18(input_shape=(32, 32, 3), classes=5),
                  lambda: applications.DenseNet121(input_shape=(32, 32, 3), classes=5),
                  lambda: applications.GoogLeNet(input_shape=(32, 32, 3), classes=5)):
        clear_session()
        m = build()
        x = rng.random((3, 32, 32, 3), dtype=np.float32)
        cpu = m.predict(x, verbose=0)
        m.to("gpu")
        gpu = m.predict(x, verbose=0)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-6)
        m.compile(optimizer=optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
        assert np.isfinite(m.train_on_batch(x, np.array([0, 3, 4])))


def test_preprocess_input_modes_by_hand():
    px = np.array([[[[10.0, 200.0, 255.0]]]], dtype=np.float32)  # one RGB pixel
    caffe = applications.vgg.preprocess_input(px)
    np.testing.assert_allclose(caffe[0, 0, 0], [255 - 103.939, 200 - 116.779, 10 - 123.68], rtol=1e-6)
    np.testing.assert_array_equal(applications.resnet.preprocess_input(px), caffe)
    torch_mode = applications.densenet.preprocess_input(px)
    np.testing.assert_allclose(torch_mode[0, 0, 0], [(10 / 255 - 0.485) / 0.229, (200 / 255 - 0.456) / 0.224,
                                                     (255 / 255 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_allclose(applications.preprocess_input(px, mode="tf")[0, 0, 0],
                               [10 / 127.5 - 1, 200 / 127.5 - 1, 1.0], rtol=1e-6)
    ints = np.array([[1, 2, 3]], dtype=np.uint8)
    assert applications.preprocess_input(ints).dtype == np.float32
    assert applications.preprocess_input(px.astype(np.float64)).dtype == np.float64
    assert px[0, 0, 0, 0] == 10.0  # the input is not modified
    with pytest.raises(ValueError, match="3 channels"):
        applications.preprocess_input(np.zeros((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="mode"):
        applications.preprocess_input(px, mode="keras")


def test_zoo_models_save_load_and_take_cnnkit_weight_files(tmp_path, rng):
    clear_session()
    m = applications.DenseNet121(include_top=False, input_shape=(32, 32, 3), pooling="avg")
    x = rng.random((2, 32, 32, 3), dtype=np.float32)
    want = m.predict(x, verbose=0)
    m.save(tmp_path / "d.cnnkit")
    again = models.load_model(tmp_path / "d.cnnkit")
    assert [layer.name for layer in again.layers] == [layer.name for layer in m.layers]
    np.testing.assert_array_equal(again.predict(x, verbose=0), want)
    m.save_weights(tmp_path / "d.weights.cnnkit")
    fresh = applications.DenseNet121(include_top=False, input_shape=(32, 32, 3), pooling="avg",
                                     weights=tmp_path / "d.weights.cnnkit")
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), want)
