"""MobileNet v1 (Howard et al. 2017) and TL-GAN's CelebA-40 attribute head, in Flax.

Backbone (Keras `applications.MobileNet` layout and layer names, NHWC):
  conv1: 3×3 conv, stride 2, int(32·alpha) channels, no bias -> BatchNorm -> ReLU6;
  13 depthwise-separable blocks i = 1..13 with (pointwise channels, stride)
    (64,1) (128,2) (128,1) (256,2) (256,1) (512,2) (512,1)×5 (1024,2) (1024,1):
    conv_dw_i: 3×3 depthwise conv (depth_multiplier), stride s, no bias -> BN -> ReLU6,
    conv_pw_i: 1×1 conv to int(c·alpha) channels, no bias -> BN -> ReLU6.
  'SAME' padding (for even sizes and stride 2 this pads 0 before / 1 after, as Keras'
  ZeroPadding2D(((0, 1), (0, 1))) + 'valid'); BN epsilon 1e-3, momentum 0.99 (Keras').
  ReLU6(x) = min(max(x, 0), 6). A 128×128 input gives a 4×4×int(1024·alpha) map.

CelebA-40 head (TL-GAN): global average pool -> Dense(256) -> ReLU -> Dense(40) = a,
the pre-tanh value; the network's output is tanh(a) in (-1, 1), trained with MSE against
labels in {-1, +1}. Input: RGB in [-1, 1] (pixels x/127.5 - 1).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

# (pointwise channels at alpha = 1, stride) of the 13 depthwise-separable blocks.
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                       (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def relu6(x: jax.Array) -> jax.Array:
    return jnp.clip(x, 0.0, 6.0)


class MobileNetV1(nn.Module):
    """Feature extractor without top: NHWC image in [-1, 1] -> NHWC feature map."""
    alpha: float = 1.0
    depth_multiplier: int = 1
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        def bn_relu6(y, name):
            y = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                             epsilon=self.bn_epsilon, name=name)(y)
            return relu6(y)

        x = nn.Conv(int(32 * self.alpha), (3, 3), strides=2, padding="SAME", use_bias=False,
                    name="conv1")(x)
        x = bn_relu6(x, "conv1_bn")
        for i, (channels, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
            c = x.shape[-1]
            x = nn.Conv(c * self.depth_multiplier, (3, 3), strides=stride, padding="SAME",
                        feature_group_count=c, use_bias=False, name=f"conv_dw_{i}")(x)
            x = bn_relu6(x, f"conv_dw_{i}_bn")
            x = nn.Conv(int(channels * self.alpha), (1, 1), use_bias=False,
                        name=f"conv_pw_{i}")(x)
            x = bn_relu6(x, f"conv_pw_{i}_bn")
        return x


class CelebA40Net(nn.Module):
    """TL-GAN's attribute net: NHWC [-1, 1] image -> [N, num_attributes] pre-tanh values."""
    alpha: float = 1.0
    num_attributes: int = 40
    hidden: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = MobileNetV1(alpha=self.alpha, name="mobilenet")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.relu(nn.Dense(self.hidden, name="fc1_dense")(x))
        return nn.Dense(self.num_attributes, name="fc2_dense")(x)
