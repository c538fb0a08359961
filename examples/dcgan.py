"""A DCGAN on Fashion-MNIST, trained with fit through its own train_step (as Keras' DCGAN example).

The generator upsamples with a layer written only as ``call`` in cnnkit.ops (its gradient is
recorded, no backward written); each step trains the discriminator on real and generated images,
then the generator through the discriminator, each with its own optimizer and a GradientTape.
Writes ``dcgan_samples.png``: images generated from fixed noise after training.
"""

import numpy as np
from _common import QUICK

import cnnkit
from cnnkit import GradientTape, datasets, layers, losses, metrics, models, ops, optimizers
from cnnkit.utils import set_random_seed
from cnnkit.utils.plot import plot_images

LATENT = 64


class UpSampling(layers.Layer):
    """Nearest-neighbour upsampling by 2, written with ops only: (N, H, W, C) -> (N, 2H, 2W, C)."""

    def call(self, x):
        n, h, w, c = x.shape
        x = ops.reshape(x, (n, h, 1, w, 1, c))
        x = ops.broadcast_to(x, (n, h, 2, w, 2, c))
        return ops.reshape(x, (n, 2 * h, 2 * w, c))


def build_generator():
    return models.Sequential([
        layers.Input((LATENT,)),
        layers.Dense(7 * 7 * 64), layers.LeakyReLU(0.2), layers.Reshape((7, 7, 64)),
        UpSampling(), layers.Conv2D(64, 3, padding="same"), layers.LeakyReLU(0.2),
        UpSampling(), layers.Conv2D(32, 3, padding="same"), layers.LeakyReLU(0.2),
        layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
    ], name="generator")


def build_discriminator():
    return models.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(32, 3, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Conv2D(64, 3, strides=2, padding="same"), layers.LeakyReLU(0.2),
        layers.Flatten(), layers.Dropout(0.3), layers.Dense(1),  # a logit: real (0) or generated (1)
    ], name="discriminator")


class GAN(cnnkit.Model):
    def __init__(self, discriminator, generator, seed=0):
        super().__init__()
        self.discriminator, self.generator = discriminator, generator
        self.rng = np.random.default_rng(seed)
        self.d_loss_tracker = metrics.Mean(name="d_loss")
        self.g_loss_tracker = metrics.Mean(name="g_loss")

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

    def noise(self, n, like):
        xp = ops.get_array_module(like)
        return xp.asarray(self.rng.standard_normal((n, LATENT)), dtype=like.dtype)

    def train_step(self, real):
        n = real.shape[0]
        xp = ops.get_array_module(real)
        # the discriminator: generated images labelled 1, real ones 0, with a little label noise
        fake = self.generator(self.noise(n, real))
        images = ops.concatenate([fake, real], axis=0)
        labels = xp.concatenate([xp.ones((n, 1), real.dtype), xp.zeros((n, 1), real.dtype)])
        labels = labels + 0.05 * xp.asarray(self.rng.random(labels.shape), dtype=real.dtype)
        with GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images, training=True))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        # the generator: make the discriminator call its images real
        with GradientTape() as tape:
            pred = self.discriminator(self.generator(self.noise(n, real), training=True), training=True)
            g_loss = self.loss_fn(xp.zeros((n, 1), real.dtype), pred)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


def main():
    set_random_seed(0)
    (x, _), _ = datasets.fashion_mnist.load_data()
    x = (x[:256 if QUICK else 20000] / 255.0).astype("float32")[..., None]
    gan = GAN(build_discriminator(), build_generator())
    gan.compile(d_optimizer=optimizers.Adam(2e-4, beta_1=0.5), g_optimizer=optimizers.Adam(2e-4, beta_1=0.5),
                loss_fn=losses.BinaryCrossentropy(from_logits=True))
    history = gan.fit(x, epochs=1 if QUICK else 5, batch_size=64, verbose=2)
    print("final losses:", {k: round(v[-1], 4) for k, v in history.history.items()})
    fixed = np.random.default_rng(1).standard_normal((16, LATENT)).astype("float32")
    samples = gan.generator.predict(fixed, verbose=0)
    print("wrote", plot_images(samples, path="dcgan_samples.png", ncols=8, max_images=16))


if __name__ == "__main__":
    main()
