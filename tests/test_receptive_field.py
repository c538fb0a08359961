"""cnnkit.utils.receptive_field against values computed by hand from Araujo et al. (2019)'s
recurrences, and the summary column that shows it."""

import numpy as np
import pytest

from cnnkit import applications, layers, models
from cnnkit.layers.base import clear_session
from cnnkit.utils import receptive_field


def by_name(model):
    return {r.layer: r for r in receptive_field(model)}


def test_lenet5_32():
    clear_session()
    rf = by_name(applications.LeNet5())
    # (size, jump, field, start) by hand: C1 5x5: r=5; S2 2x2/2: r=5+1=6, j=2; C3 5x5: r=6+4*2=14;
    # S4: r=14+1*2=16, j=4; C5 5x5: r=16+4*4=32 (all of the 32x32 image), centred on 15.5
    want = {"c1": (28, 1, 5, 2.0), "s2": (14, 2, 6, 2.5), "c3": (10, 2, 14, 6.5), "s4": (5, 4, 16, 7.5),
            "c5": (1, 4, 32, 15.5), "f6": (1, 4, 32, 15.5), "predictions": (1, 4, 32, 15.5)}
    for name, (n, j, r, s) in want.items():
        assert rf[name].output_size == (n, n) and rf[name].jump == (j, j)
        assert rf[name].receptive_field == (r, r) and rf[name].start == (s, s), name


def test_lenet5_28_same_padding():
    clear_session()
    rf = by_name(applications.LeNet5(input_shape=(28, 28, 1)))
    # C1 pads 2 on each side: the first cell is centred on pixel 0; later starts shift by 0.5*2, 2*2, ...
    want = {"c1": (28, 1, 5, 0.0), "s2": (14, 2, 6, 0.5), "c3": (10, 2, 14, 4.5), "s4": (5, 4, 16, 5.5),
            "c5": (1, 4, 32, 13.5)}
    for name, (n, j, r, s) in want.items():
        assert (rf[name].output_size[0], rf[name].jump[0], rf[name].receptive_field[0], rf[name].start[0]) == \
            (n, j, r, s), name


def test_vgg16():
    clear_session()
    rf = by_name(applications.VGG16())
    # every 3x3 "same" conv adds 2 * jump, every 2x2/2 pool adds 1 * jump and doubles it
    r, j, start, size = 1, 1, 0.0, 224
    expected = {}
    for b, n in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n + 1):
            r += 2 * j
            expected[f"block{b}_conv{i}"] = (size, j, r, start)
        r, start, j, size = r + j, start + 0.5 * j, 2 * j, size // 2
        expected[f"block{b}_pool"] = (size, j, r, start)
    assert expected["block5_pool"] == (7, 32, 212, 15.5)  # Araujo et al., Table 1: VGG-16 212
    assert expected["block3_conv3"][2] == 40 and expected["block4_pool"][2] == 100
    for name, (n, jj, rr, s) in expected.items():
        got = rf[name]
        assert (got.output_size, got.jump, got.receptive_field, got.start) == ((n, n), (jj, jj), (rr, rr), (s, s))
    # flatten: one window over the 7x7 map: 212 + 6 * 32, centred on the image centre
    assert rf["flatten"].receptive_field == (404, 404) and rf["flatten"].start == (111.5, 111.5)
    assert rf["fc1"] == rf["flatten"]._replace(layer="fc1")


def test_resnet50_matches_the_paper():
    clear_session()
    rf = by_name(applications.ResNet50(include_top=False, input_shape=(224, 224, 3)))
    assert rf["conv1_conv"].receptive_field == (7, 7) and rf["conv1_conv"].start == (0.0, 0.0)
    assert rf["pool1_pool"].receptive_field == (11, 11) and rf["pool1_pool"].jump == (4, 4)
    assert rf["conv5_block3_out"].receptive_field == (483, 483)  # Araujo et al., Table 1: ResNet-50 483
    assert rf["conv5_block3_out"].jump == (32, 32) and rf["conv5_block3_out"].output_size == (7, 7)


def test_branches_merge_as_the_union_and_non_square_geometry():
    clear_session()
    inp = layers.Input((20, 17, 2))
    a = layers.Conv2D(3, (5, 1), padding="same", name="a")(inp)        # r (5, 1), centred
    b = layers.Conv2D(3, (1, 3), dilation_rate=(1, 2), name="b")(inp)  # valid: r (1, 5), starts (0, 2)
    b = layers.ZeroPadding2D(((0, 0), (2, 2)), name="pad")(b)          # back to 17 columns: start 2 - 2 = 0
    out = layers.Add(name="add")([a, b])
    c = layers.MaxPooling2D((2, 3), strides=(2, 1), name="pool")(out)
    rf = by_name(models.Model(inp, c))
    assert rf["b"].receptive_field == (1, 5) and rf["b"].start == (0.0, 2.0) and rf["b"].output_size == (20, 13)
    assert rf["pad"].start == (0.0, 0.0) and rf["pad"].output_size == (20, 17)
    assert rf["add"].receptive_field == (5, 5) and rf["add"].start == (0.0, 0.0)
    # pool (2, 3) / (2, 1): r += (1 * 1, 2 * 1); start += (0.5, 1)
    assert rf["pool"].receptive_field == (6, 7) and rf["pool"].jump == (2, 1) and rf["pool"].start == (0.5, 1.0)
    assert rf["pool"].output_size == (10, 15)


def test_union_of_shifted_fields():
    clear_session()
    inp = layers.Input((9, 9, 1))
    a = layers.Conv2D(1, 3, name="a")(inp)                                        # field [0, 2]
    b = layers.Cropping2D(((1, 1), (1, 1)), name="crop")(inp)                      # field [1, 1]
    b = layers.Conv2D(1, 1, name="b")(b)
    rf = by_name(models.Model(inp, layers.Concatenate(name="cat")([a, b])))
    assert rf["crop"].start == (1.0, 1.0) and rf["cat"].receptive_field == (3, 3) and rf["cat"].start == (1.0, 1.0)
    inp = layers.Input((9, 9, 1))
    a = layers.Conv2D(1, 3, name="a")(layers.Cropping2D(((0, 2), (0, 2)))(inp))   # rows [0, 2], cols [0, 2]
    b = layers.Conv2D(1, 3, name="b")(layers.Cropping2D(((2, 0), (0, 2)))(inp))   # rows [2, 4], cols [0, 2]
    rf = by_name(models.Model(inp, layers.Add(name="sum")([a, b])))
    assert rf["sum"].receptive_field == (5, 3) and rf["sum"].start == (2.0, 1.0)


def test_errors():
    clear_session()
    inp = layers.Input((None, None, 3))
    with pytest.raises(ValueError, match="known height and width"):
        receptive_field(models.Model(inp, layers.Conv2D(2, 3)(inp)))
    inp = layers.Input((8, 8, 3))
    with pytest.raises(ValueError, match="Reshape"):
        receptive_field(models.Model(inp, layers.Conv2D(2, 3)(layers.Reshape((4, 16, 3))(inp))))
    with pytest.raises(TypeError, match="Model"):
        receptive_field(layers.Conv2D(2, 3))


def test_summary_column_and_nested_models(capsys):
    clear_session()
    m = applications.LeNet5()
    m.summary(receptive_field=True)
    text = capsys.readouterr().out
    assert "RF (jump)" in text
    assert [line.split()[-2:] for line in text.splitlines() if line.startswith(" c5 ")] == [["32", "(4)"]]
    m.summary()
    assert "RF (jump)" not in capsys.readouterr().out
    seq = models.Sequential([layers.Input((32, 32, 1)), m, layers.Dense(2)])
    rf = receptive_field(seq)
    assert rf[-2].layer == "lenet5" and rf[-2].receptive_field == (32, 32)
    seq.summary(receptive_field=True)
    assert "32 (4)" in capsys.readouterr().out
    g = models.Model(m.inputs[0], m.get_layer("c3").output)  # a sub-graph: input, c1, s2, c3
    g.summary(receptive_field=True)
    assert "14 (2)" in capsys.readouterr().out
    np.testing.assert_equal(len(receptive_field(g)), 4)
