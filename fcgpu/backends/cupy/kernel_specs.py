"""The CuPy backend's kernels: each ``cupy.ElementwiseKernel``'s parameters and operation.

``KERNEL_SPECS`` declares every kernel the CuPy backend builds (its arithmetic lives in
``kernels/*.cuh``, the preamble of each); the compile gate and the stand-in's tests read it too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...activations.table import ACTIVATIONS


@dataclass(frozen=True)
class KernelSpec:
    """The arguments of one ``cupy.ElementwiseKernel``; its preamble is every header in kernels/."""

    name: str
    in_params: str
    out_params: str
    operation: str


def _specs() -> dict[str, KernelSpec]:
    specs = []
    for act in ACTIVATIONS.values():
        f = act.kernel_functor
        if act.rows:
            # One warp per row (size = B x 32, kernels/blocks.cuh): i = row x 32 + lane over the
            # C-ordered (B, ncols) arrays.
            fwd, bwd = f"fc_{act.name}_warp_forward", f"fc_{act.name}_warp_backward"
            specs += [
                KernelSpec(f"fcgpu_bias_{act.name}_fwd", "raw T z, raw T b, int64 ncols", "raw T y",
                           f"{fwd}<T>(z, b, true, y, i, ncols)"),
                KernelSpec(f"fcgpu_{act.name}_fwd", "raw T z, int64 ncols", "raw T y",
                           f"{fwd}<T>(z, z, false, y, i, ncols)"),
                KernelSpec(f"fcgpu_{act.name}_bwd", "raw T y, raw T dy, int64 ncols", "raw T dz",
                           f"{bwd}<T>(y, dy, dz, i, ncols)"),
            ]
            continue
        specs += [
            KernelSpec(f"fcgpu_bias_{act.name}_fwd", "T z, T b", "T y", f"y = fc_bias_act_forward<{f}>(z, b)"),
            KernelSpec(f"fcgpu_{act.name}_fwd", "T z", "T y", f"y = fc_act_forward<{f}>(z)"),
            KernelSpec(f"fcgpu_{act.name}_bwd", "T y, T dy", "T dz", f"dz = fc_act_backward<{f}>(y, dy)"),
        ]
        if act.backward_from == "z":  # two outputs: s = z + b, which backward reads, and y = act(s)
            specs.append(KernelSpec(f"fcgpu_bias_{act.name}_fwd_keep", "T z, T b", "T s, T y",
                                    f"fc_bias_act_forward_keep<{f}>(z, b, s, y)"))
        else:  # fused with a Dropout after the Dense: the mask as fcgpu_dropout draws it
            mask = "uint64 seed, uint64 step, int64 offset, uint32 threshold, float64 scale"
            index = "(unsigned long long)(offset + i)"
            specs += [
                KernelSpec(f"fcgpu_bias_{act.name}_dropout_fwd", f"T z, T b, bool has_bias, {mask}", "T y, T yd",
                           f"fc_bias_act_dropout_forward<{f}>(z, b, has_bias, y, yd, seed, step, {index}, "
                           f"threshold, scale)"),
                KernelSpec(f"fcgpu_{act.name}_dropout_bwd", f"T y, T dyd, {mask}", "T dz",
                           f"dz = fc_act_dropout_backward<{f}>(y, dyd, seed, step, {index}, threshold, scale)"),
            ]
    # Dropout, forward on x and backward on dy: element i is element offset + i of the batch, its
    # mask bit drawn from (seed, step, offset + i) by Philox both times (kernels/random.cuh).
    specs.append(KernelSpec(
        "fcgpu_dropout",
        "T x, uint64 seed, uint64 step, int64 offset, uint32 threshold, float64 scale",
        "T y",
        "y = fc_dropout(x, seed, step, (unsigned long long)(offset + i), threshold, scale)",
    ))
    specs += [
        # i indexes the contiguous (B, C) output, so row = i / ncols and class = i % ncols.
        KernelSpec(
            "fcgpu_softmax_xent_grad_ids",
            "T z, T lse, raw I labels, int64 ncols, float64 scale",
            "T dz",
            "dz = fc_softmax_xent_grad(z, lse, (long long)labels[i / ncols] == (long long)(i % ncols) ? T(1) : T(0), scale)",
        ),
        KernelSpec(
            "fcgpu_softmax_xent_grad_probs",
            "T z, T lse, Y target, float64 scale",
            "T dz",
            "dz = fc_softmax_xent_grad(z, lse, target, scale)",
        ),
        # The fused training steps; the running sums land in a float64 accumulator acc (2,): [loss x
        # weight, correct x weight]. gs[0] multiplies the gradient's scale: the loss scale, read from
        # LossScaleOptimizer's device state (1 without one); sw, weighted: a sample weight a row (read
        # only when weighted; Keras's sample_weight / class_weight). Softmax cross-entropy: one warp per
        # row (size = B x 32).
        KernelSpec(
            "fcgpu_softmax_xent_rows_ids",
            "raw T z, raw I labels, int64 ncols, float64 scale, float64 weight, bool count, raw float64 gs, raw W sw, "
            "bool weighted",
            "raw T dz, raw float64 acc",
            "fc_softmax_xent_warp_ids<T>(z, labels, dz, i, ncols, scale * gs[0], weight, count, &acc[0], sw, weighted)",
        ),
        KernelSpec(
            "fcgpu_softmax_xent_rows_probs",
            "raw T z, raw Y t, int64 ncols, float64 scale, float64 weight, bool count, raw float64 gs, raw W sw, "
            "bool weighted",
            "raw T dz, raw float64 acc",
            "fc_softmax_xent_warp_probs<T>(z, t, dz, i, ncols, scale * gs[0], weight, count, &acc[0], sw, weighted)",
        ),
    ]
    # The elementwise losses' steps over n contiguous elements, size = blocks x FC_LOSS_BLOCK: sums
    # reduced in each block, one partial a block, added in block order by the last block.
    grid_outs = "raw T dp, raw float64 acc, raw float64 partials, raw uint32 ticket"
    grid_tail = "p, y, dp, n, i, _ind.size(), weight, &partials[0], &ticket[0], &acc[0], sw, weighted, cols)"
    for name, extra, term in (
        ("fcgpu_bce_logits_step", "float64 scale, float64 weight, bool count", "fc_bce_logits_term(scale * gs[0], count)"),
        ("fcgpu_mse_step", "float64 scale, float64 weight", "fc_mse_term(scale * gs[0])"),
        ("fcgpu_mae_step", "float64 scale, float64 weight", "fc_mae_term(scale * gs[0])"),
        ("fcgpu_huber_step", "float64 delta, float64 scale, float64 weight", "fc_huber_term(delta, scale * gs[0])"),
    ):
        specs.append(KernelSpec(name, f"raw T p, raw Y y, int64 n, {extra}, raw float64 gs, raw W sw, bool weighted, "
                                      "int64 cols", grid_outs,
                                f"fc_loss_grid<T>({term}, {grid_tail}"))
    specs.append(KernelSpec("fcgpu_all_finite", "raw T g, int64 n", "raw bool ok, raw float64 partials, raw uint32 ticket",
                            "fc_all_finite_grid<T>(g, n, i, _ind.size(), &partials[0], &ticket[0], &ok[0])"))
    # Loss scaling's overflow check into LossScaleOptimizer's device state ls (kernels/optimizers.cuh,
    # FC_LS_*), which also halves or grows the scale there: one launch a gradient buffer.
    specs.append(KernelSpec(
        "fcgpu_loss_scale_check",
        "raw T g, int64 n, bool first, bool last, float64 growth, float64 lr, float64 beta1, float64 beta2",
        "raw float64 ls, raw float64 partials, raw uint32 ticket",
        "fc_loss_scale_check_grid<T>(g, n, i, _ind.size(), first, last, growth, lr, beta1, beta2, &partials[0], "
        "&ticket[0], &ls[0])",
    ))
    # Keras's clipnorm / global_clipnorm: the squared norms of one flat gradient buffer's segments,
    # one block a segment, into the clipping factors cs the _clip updates read (kernels/optimizers.cuh).
    specs.append(KernelSpec(
        "fcgpu_clip_norms",
        "raw T g, raw int64 segs, int64 base, float64 clipnorm, bool per_variable, bool first, bool last, "
        "float64 unscale, raw float64 ls, bool guarded",
        "raw float64 cs, raw float64 partials, raw uint32 ticket",
        "fc_clip_norms_grid<T>(g, &segs[0], i, _ind.size(), base, clipnorm, per_variable, first, last, unscale, "
        "&ls[0], guarded, &partials[0], &ticket[0], &cs[0])",
    ))
    specs += [
        KernelSpec("fcgpu_bce_logits_loss", "T z, Y y", "T loss", "loss = fc_bce_logits_loss(z, y)"),
        KernelSpec("fcgpu_bce_logits_grad", "T z, Y y, float64 scale", "T dz", "dz = fc_bce_logits_grad(z, y, scale)"),
        KernelSpec("fcgpu_bce_prob_loss", "T p, Y y, float64 eps", "T loss", "loss = fc_bce_prob_loss(p, y, eps)"),
        KernelSpec("fcgpu_bce_prob_grad", "T p, Y y, float64 eps, float64 scale", "T dp", "dp = fc_bce_prob_grad(p, y, eps, scale)"),
        KernelSpec("fcgpu_mse_grad", "T p, Y y, float64 scale", "T dp", "dp = fc_mse_grad(p, y, scale)"),
        KernelSpec("fcgpu_mae_grad", "T p, Y y, float64 scale", "T dp", "dp = fc_mae_grad(p, y, scale)"),
        KernelSpec(
            "fcgpu_huber_grad", "T p, Y y, float64 delta, float64 scale", "T dp", "dp = fc_huber_grad(p, y, delta, scale)"
        ),
        KernelSpec(
            "fcgpu_sgd",
            "T grad, float64 lr, float64 wd",
            "T p",
            "T no_buf = T(0); fc_sgd_update(p, no_buf, grad, lr, 0.0, wd, false)",
        ),
        KernelSpec(
            "fcgpu_sgd_momentum",
            "T grad, float64 lr, float64 mu, float64 wd, bool nesterov",
            "T p, S buf",
            "fc_sgd_update(p, buf, grad, lr, mu, wd, nesterov)",
        ),
        KernelSpec(
            "fcgpu_adam",
            "T grad, float64 beta1, float64 beta2, float64 one_minus_beta1, float64 one_minus_beta2, float64 eps, "
            "float64 wd, float64 decay, float64 step_size, float64 bc2_sqrt, bool decoupled",
            "T p, S m, S v",
            "fc_adam_update(p, m, v, grad, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, wd, decay, "
            "step_size, bc2_sqrt, decoupled)",
        ),
        KernelSpec(
            "fcgpu_adagrad",
            "T grad, float64 lr, float64 eps, float64 decay",
            "T p, S acc",
            "fc_adagrad_update(p, acc, grad, lr, eps, decay)",
        ),
        # gs[0]: the factor the loss gradient carries (the loss scale's device value, or 1).
        KernelSpec("fcgpu_l1l2_grad", "T w, float64 l1, float64 two_l2, raw float64 gs", "T g",
                   "fc_l1l2_grad(g, w, l1 * gs[0], two_l2 * gs[0])"),
        KernelSpec("fcgpu_l1l2_terms", "T w, float64 l1, float64 l2", "float64 r", "r = fc_l1l2_term(w, l1, l2)"),
    ]
    # RMSprop with and without the centered average and the momentum buffer: a state a variant does
    # not keep is a local, so no kernel reads or writes an unused buffer.
    for centered in (False, True):
        for momentum in (False, True):
            outs = "T p, S v" + (", S mg" if centered else "") + (", S mom" if momentum else "")
            local = "".join(f"S {n} = S(0); " for n, kept in (("mg", centered), ("mom", momentum)) if not kept)
            specs.append(KernelSpec(
                "fcgpu_rmsprop" + ("_centered" if centered else "") + ("_momentum" if momentum else ""),
                "T grad, float64 lr, float64 rho, float64 one_minus_rho, float64 momentum, float64 eps, float64 decay",
                outs,
                f"{local}fc_rmsprop_update(p, v, mg, mom, grad, lr, rho, one_minus_rho, momentum, eps, decay, "
                f"{'true' if centered else 'false'}, {'true' if momentum else 'false'})",
            ))
    specs += [variant for spec in specs if spec.name in _UPDATE_KERNELS for variant in _mixed_variants(spec)]
    specs += _layer_specs()
    return {s.name: s for s in specs}


def _layer_specs() -> list[KernelSpec]:
    """The kernels of the layers beyond Dense (kernels/layers.cuh). Elementwise ones broadcast a
    per-feature array (N,) over the rows of x (B, N); the column reductions run FC_COL_BLOCK threads
    a block of 32 columns (size = ceil(N / 32) x 256), the row ones a warp a row (size = B x 32)."""
    relu = "float64 max_value, bool has_max, float64 slope, float64 threshold"
    noise = "uint64 seed, uint64 step, int64 offset, float64 stddev"
    return [
        KernelSpec("fcgpu_relu_param_fwd", f"T x, {relu}", "T y",
                   "y = fc_relu_param(x, max_value, has_max, slope, threshold)"),
        KernelSpec("fcgpu_relu_param_bwd", f"T x, T dy, {relu}", "T dx",
                   "dx = fc_relu_param_grad(x, dy, max_value, has_max, slope, threshold)"),
        KernelSpec("fcgpu_elu_alpha_fwd", "T x, float64 alpha", "T y", "y = fc_elu_alpha(x, alpha)"),
        KernelSpec("fcgpu_elu_alpha_bwd", "T x, T dy, float64 alpha", "T dx", "dx = fc_elu_alpha_grad(x, dy, alpha)"),
        KernelSpec("fcgpu_prelu_fwd", "T x, T alpha", "T y", "y = fc_prelu_forward(x, alpha)"),
        KernelSpec("fcgpu_prelu_bwd", "T x, T dy, T alpha", "T dx, T dalpha", "fc_prelu_backward(x, dy, alpha, dx, dalpha)"),
        KernelSpec("fcgpu_gaussian_noise", f"T x, {noise}", "T y",
                   "y = fc_gaussian_noise(x, seed, step, (unsigned long long)(offset + i), stddev)"),
        KernelSpec("fcgpu_normalize", "T x, T mean, T denom, bool invert", "T y", "y = fc_normalize(x, mean, denom, invert)"),
        KernelSpec("fcgpu_normalize_bwd", "T dy, T denom, bool invert", "T dx", "dx = fc_normalize_backward(dy, denom, invert)"),
        KernelSpec("fcgpu_bn_apply", "T x, T mean, T var, T gamma, T beta, float64 eps, bool has_gamma, bool has_beta",
                   "T y", "y = fc_bn_apply(x, mean, var, gamma, beta, eps, has_gamma, has_beta)"),
        KernelSpec("fcgpu_bn_dx",
                   "T x, T dy, T mean, T var, T gamma, T sdy, T sdyx, float64 eps, float64 rows, bool has_gamma, "
                   "bool batch_stats", "T dx",
                   "dx = fc_bn_dx(x, dy, mean, var, gamma, sdy, sdyx, eps, rows, has_gamma, batch_stats)"),
        KernelSpec("fcgpu_bn_stats", "raw T x, int64 rows, int64 ncols, float64 momentum, bool update",
                   "raw T mean, raw T var, raw T moving_mean, raw T moving_var",
                   "fc_bn_stats<T>(x, rows, ncols, momentum, update, mean, var, moving_mean, moving_var, i)"),
        KernelSpec("fcgpu_bn_param_grads", "raw T x, raw T dy, raw T mean, raw T var, float64 eps, int64 rows, int64 ncols",
                   "raw T sdy, raw T sdyx",
                   "fc_param_grads<T>(fc_column_stats{eps}, x, dy, mean, var, rows, ncols, sdy, sdyx, i)"),
        KernelSpec("fcgpu_ln_param_grads", "raw T x, raw T dy, raw T mean, raw T rstd, int64 rows, int64 ncols",
                   "raw T sdy, raw T sdyx",
                   "fc_param_grads<T>(fc_row_stats{0.0}, x, dy, mean, rstd, rows, ncols, sdy, sdyx, i)"),
        KernelSpec("fcgpu_ln_forward",
                   "raw T x, raw T gamma, raw T beta, bool has_gamma, bool has_beta, float64 eps, int64 ncols",
                   "raw T y, raw T mean, raw T rstd",
                   "fc_ln_forward<T>(x, gamma, beta, has_gamma, has_beta, eps, ncols, y, mean, rstd, i)"),
        KernelSpec("fcgpu_ln_dx", "raw T x, raw T dy, raw T mean, raw T rstd, raw T gamma, bool has_gamma, int64 ncols",
                   "raw T dx", "fc_ln_dx<T>(x, dy, mean, rstd, gamma, has_gamma, ncols, dx, i)"),
    ]


# The optimizer updates, each also in two variants for mixed precision (``_mixed_variants``).
_UPDATE_KERNELS = ("fcgpu_sgd", "fcgpu_sgd_momentum", "fcgpu_adam", "fcgpu_adagrad") + tuple(
    "fcgpu_rmsprop" + c + m for c in ("", "_centered") for m in ("", "_momentum")
)


# Guarded updates read these from the loss scaler's device state instead of the host (FC_LS_*).
_FROM_DEVICE = {"step_size": "ls[FC_LS_STEP_SIZE]", "bc2_sqrt": "ls[FC_LS_BC2_SQRT]"}


def _mixed_variants(spec: KernelSpec) -> list[KernelSpec]:
    """``<name>_unscaled``: the gradient multiplied by ``unscale`` (1/loss scale) as it is read;
    ``<name>_mixed``: that, and the parameter's half copy ``ph`` (type H) written in the same pass,
    so a mixed-precision step casts the master weights once, here, and nowhere else.
    ``<name>_guarded`` (and ``_guarded_mixed``): LossScaleOptimizer's step without a host read: the
    update skips itself (parameters, half copy and state as they were) where the device state ``ls``
    flags an overflow, unscales by ls's 1/scale, and Adam takes its bias corrections from ls.
    ``<name>_clip`` (``_clip_mixed``, ``_clip_guarded``, ``_clip_guarded_mixed``): those with the
    unscaled gradient clipped as it is read (Keras's clipnorm, global_clipnorm or clipvalue:
    ``fc_clipped``), its norm factor from the device array ``cs`` (``fcgpu_clip_norms``)."""
    operation = re.sub(r"\bgrad\b", "fc_unscaled(grad, unscale)", spec.operation)
    in_params = spec.in_params + ", float64 unscale"
    guarded = re.sub(r"\bgrad\b", "fc_unscaled(grad, ls[FC_LS_UNSCALE])", spec.operation)
    guarded_in = spec.in_params
    for name, source in _FROM_DEVICE.items():
        guarded = re.sub(rf"\b{name}\b", source, guarded)
        guarded_in = guarded_in.replace(f", float64 {name}", "")
    guarded_in += ", raw float64 ls"
    clip_in = ", raw float64 cs, raw int64 segs, int64 nseg, float64 clipvalue"
    clip = "fc_clipped({}, fc_clip_factor(&cs[0], &segs[0], nseg, i), clipvalue)"
    clipped = re.sub(r"\bgrad\b", clip.format("fc_unscaled(grad, unscale)"), spec.operation)
    clipped_guarded = re.sub(r"\bfc_unscaled\(grad, ls\[FC_LS_UNSCALE\]\)",
                             clip.format("fc_unscaled(grad, ls[FC_LS_UNSCALE])"), guarded)
    return [
        KernelSpec(spec.name + "_clip", in_params + clip_in, spec.out_params, clipped),
        KernelSpec(spec.name + "_clip_mixed", in_params + clip_in, spec.out_params + ", H ph", f"{clipped}; ph = H(p)"),
        KernelSpec(spec.name + "_clip_guarded", guarded_in + clip_in, spec.out_params,
                   f"if (ls[FC_LS_SKIP] == 0.0) {{ {clipped_guarded}; }}"),
        KernelSpec(spec.name + "_clip_guarded_mixed", guarded_in + clip_in, spec.out_params + ", H ph",
                   f"if (ls[FC_LS_SKIP] == 0.0) {{ {clipped_guarded}; ph = H(p); }}"),
        KernelSpec(spec.name + "_unscaled", in_params, spec.out_params, operation),
        KernelSpec(spec.name + "_mixed", in_params, spec.out_params + ", H ph", f"{operation}; ph = H(p)"),
        KernelSpec(spec.name + "_guarded", guarded_in, spec.out_params, f"if (ls[FC_LS_SKIP] == 0.0) {{ {guarded}; }}"),
        KernelSpec(spec.name + "_guarded_mixed", guarded_in, spec.out_params + ", H ph",
                   f"if (ls[FC_LS_SKIP] == 0.0) {{ {guarded}; ph = H(p); }}"),
    ]


KERNEL_SPECS: dict[str, KernelSpec] = _specs()
