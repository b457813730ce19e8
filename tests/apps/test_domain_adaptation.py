"""OT domain adaptation: POT's ot.da estimators on the same data, out-of-sample maps, class terms, errors."""

import numpy as np
import ot
import pytest
import torch

import monge
from monge.apps.domain_adaptation import OTDomainAdapter


@pytest.fixture
def domains():
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.normal(0, 0.5, (15, 2)), rng.normal((3, 0), 0.5, (15, 2))])
    ys = np.repeat([0, 1], 15)
    R = np.array([[0.8, -0.6], [0.6, 0.8]])
    xt = np.concatenate([rng.normal(0, 0.5, (12, 2)), rng.normal((3, 0), 0.5, (13, 2))]) @ R.T + (1.0, 2.0)
    yt = np.repeat([0, 1], [12, 13])
    return xs, ys, xt, yt


def test_exact_matches_pot_emd_transport(domains):
    xs, _, xt, _ = domains
    ref = ot.da.EMDTransport().fit(Xs=xs, Xt=xt)
    da = OTDomainAdapter().fit(torch.from_numpy(xs), torch.from_numpy(xt))
    np.testing.assert_allclose(da.transform(torch.from_numpy(xs)).numpy(), ref.transform(Xs=xs), atol=1e-10)
    np.testing.assert_allclose(da.transform().numpy(), ref.transform(Xs=xs), atol=1e-10)
    np.testing.assert_allclose(da.inverse_transform(torch.from_numpy(xt)).numpy(), ref.inverse_transform(Xt=xt),
                               atol=1e-10)
    new = xs[:5] + 0.05  # out of sample: nearest fitted point's displacement, as in ot.da
    np.testing.assert_allclose(da.transform(torch.from_numpy(new)).numpy(), ref.transform(Xs=new), atol=1e-10)
    newt = xt[:4] - 0.05
    np.testing.assert_allclose(da.inverse_transform(torch.from_numpy(newt)).numpy(), ref.inverse_transform(Xt=newt),
                               atol=1e-10)


def test_sinkhorn_matches_pot_sinkhorn_transport(domains):
    xs, _, xt, _ = domains
    ref = ot.da.SinkhornTransport(reg_e=0.5, max_iter=20000, tol=1e-12).fit(Xs=xs, Xt=xt)
    da = OTDomainAdapter(method="sinkhorn", eps=0.5, solver_options={"tol": 1e-11}).fit(
        torch.from_numpy(xs), torch.from_numpy(xt))
    np.testing.assert_allclose(da.coupling_.numpy(), ref.coupling_, atol=1e-9)
    np.testing.assert_allclose(da.transform(torch.from_numpy(xs)).numpy(), ref.transform(Xs=xs), atol=1e-7)
    np.testing.assert_allclose(da.inverse_transform(torch.from_numpy(xt)).numpy(), ref.inverse_transform(Xt=xt),
                               atol=1e-7)
    # the entropic map extends smoothly and agrees with the projection on the fitted samples
    ent = OTDomainAdapter(method="sinkhorn", eps=0.5, extension="entropic", solver_options={"tol": 1e-11}).fit(
        torch.from_numpy(xs), torch.from_numpy(xt))
    np.testing.assert_allclose(ent.transform(torch.from_numpy(xs)).numpy(), ref.transform(Xs=xs), atol=1e-7)
    np.testing.assert_allclose(ent.inverse_transform(torch.from_numpy(xt)).numpy(), ref.inverse_transform(Xt=xt),
                               atol=1e-7)


def test_semi_supervised_labels_match_pot_limit_max(domains):
    xs, ys, xt, yt = domains
    yt_partial = yt.copy()
    yt_partial[::2] = -1
    ref = ot.da.EMDTransport(limit_max=10).fit(Xs=xs, ys=ys, Xt=xt, yt=yt_partial)
    da = OTDomainAdapter(label_cost=10).fit(torch.from_numpy(xs), torch.from_numpy(xt), torch.from_numpy(ys),
                                            torch.from_numpy(yt_partial))
    np.testing.assert_allclose(da.transform().numpy(), ref.transform(Xs=xs), atol=1e-10)
    P = da.coupling_.numpy()
    mixed = (ys[:, None] != yt_partial[None, :]) & (yt_partial[None, :] >= 0)
    assert P[mixed].sum() < 1e-12


def test_group_lasso_matches_pot_lpl1_and_separates_classes(domains):
    xs, ys, xt, yt = domains
    ref = ot.da.SinkhornLpl1Transport(reg_e=0.5, reg_cl=2.0, max_iter=10, max_inner_iter=20000, tol=1e-12).fit(
        Xs=xs, ys=ys, Xt=xt)
    da = OTDomainAdapter(method="sinkhorn", eps=0.5, reg_class=2.0, solver_options={"tol": 1e-11}).fit(
        torch.from_numpy(xs), torch.from_numpy(xt), torch.from_numpy(ys))
    np.testing.assert_allclose(da.coupling_.numpy(), ref.coupling_, atol=1e-7)
    plain = OTDomainAdapter(method="sinkhorn", eps=0.5).fit(torch.from_numpy(xs), torch.from_numpy(xt))

    def mixing(P):  # mass a target sample receives from its less-represented source class
        per = np.stack([P[ys == c].sum(0) for c in (0, 1)])
        return per.min(0).sum()

    assert mixing(da.coupling_.numpy()) < 0.5 * mixing(plain.coupling_.numpy())


def test_kernel_extension_and_adaptation_helps_a_classifier(domains):
    xs, ys, xt, yt = domains
    da = OTDomainAdapter(extension="kernel").fit(torch.from_numpy(xs), torch.from_numpy(xt))
    moved = da.transform(torch.from_numpy(xs)).numpy()

    def one_nn_error(train, labels):
        d = ((xt[:, None] - train[None]) ** 2).sum(-1)
        return float((labels[d.argmin(1)] != yt).mean())

    assert one_nn_error(moved, ys) < one_nn_error(xs, ys)
    assert one_nn_error(moved, ys) <= 0.1


def test_float32_and_public_names():
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(10, 3, generator=g), torch.randn(8, 3, generator=g)
    da = monge.apps.domain_adaptation.OTDomainAdapter().fit(xs, xt)
    assert da.transform(xs).dtype == torch.float32 and da.transform(xs).shape == (10, 3)
    assert da.inverse_transform(xt).shape == (8, 3)
    assert monge.OTDomainAdapter is OTDomainAdapter and monge.apps.OTDomainAdapter is OTDomainAdapter


def test_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        OTDomainAdapter(method="gw")
    with pytest.raises(ValueError, match="eps"):
        OTDomainAdapter(method="sinkhorn")
    with pytest.raises(ValueError, match="eps: only"):
        OTDomainAdapter(eps=0.1)
    with pytest.raises(ValueError, match="entropic"):
        OTDomainAdapter(extension="entropic")
    x = torch.rand(5, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="fit"):
        OTDomainAdapter().transform(x)
    with pytest.raises(ValueError, match="xt: expected shape"):
        OTDomainAdapter().fit(x, torch.rand(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="ys: reg_class"):
        OTDomainAdapter(reg_class=1.0).fit(x, x)
    with pytest.raises(ValueError, match="ys: expected integer labels"):
        OTDomainAdapter().fit(x, x, ys=torch.rand(5), yt=torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="x: expected points"):
        OTDomainAdapter().fit(x, x).transform(torch.rand(3, 4, dtype=torch.float64))
