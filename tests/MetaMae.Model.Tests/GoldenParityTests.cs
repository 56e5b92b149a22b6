using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>
/// Number-for-number parity with the authors' implementation on the fixtures in tests/fixtures/golden (a copy of
/// ../shared/golden): every intermediate, every loss and every parameter gradient.
/// </summary>
public class GoldenParityTests
{
    public static TheoryData<string> Cases => new()
    {
        "image2d", "image2d_first_order", "sensor1d", "sensor1d_first_order",
        "tokens", "tokens_first_order", "tabular", "tabular_first_order",
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MetaMae_step_matches_the_reference_implementation(string name)
    {
        var golden = new GoldenCase(name);
        using var scope = NewDisposeScope();
        using var model = golden.BuildModel();
        model.train();
        var x = golden.Load("input");
        var draws = golden.Draws();

        var output = Objectives.Compute(model, x, draws);

        Close.Tensor(golden.Load("mask"), output.Mask, "mask");
        Assert.Equal(0L, golden.Load("ids_restore").ne(output.IdsRestore).sum().item<long>());
        Close.Tensor(golden.Load("latent"), output.Latent, "latent");
        Close.Tensor(golden.Load("target"), output.Target, "target");
        Close.Tensor(golden.Load("nearby_mask"), output.Nearby!, "nearby_mask");
        Close.Tensor(golden.Load("support_mask"), output.SupportMask!, "support_mask");
        // The inner pass decodes the support rows only: compare the reference's predictions at those rows.
        var rows = output.SupportRows!;
        var fullSupport = golden.Load("pred_support");
        var atRows = model.Input.Kind != TokenizerKind.Tokens
            ? MaskedAutoencoder.TargetRows(fullSupport, rows)
            : fullSupport.gather(2, rows.unsqueeze(1).expand(rows.shape[0], fullSupport.shape[1], rows.shape[1]));
        Assert.Equal(output.SupportMask!.sum().item<float>(), output.SupportMask!.gather(1, rows).sum().item<float>());
        Close.Tensor(atRows, output.PredSupport!, "pred_support");
        Close.Tensor(golden.Load("adapted_latent"), output.AdaptedLatent!, "adapted_latent");
        Close.Tensor(golden.Load("pred"), output.Pred, "pred");
        Close.Tensor(golden.Load("proj_amortized"), output.ProjAmortized!, "proj_amortized");
        Close.Tensor(golden.Load("proj_adapted"), output.ProjAdapted!, "proj_adapted");

        Close.Scalar(golden.Scalar("loss_support"), output.Support!.item<float>(), "loss_support");
        Close.Scalar(golden.Scalar("loss_recon"), output.Recon.item<float>(), "loss_recon");
        Close.Scalar(golden.Scalar("loss_contrastive"), output.Contrastive!.item<float>(), "loss_contrastive");
        Close.Scalar(golden.Scalar("loss_total"), output.Total.item<float>(), "loss_total");

        output.Total.backward();
        int compared = 0;
        foreach (var (pname, p) in model.named_parameters())
        {
            Assert.True(golden.Has("grad." + pname), $"fixture has no gradient for '{pname}'");
            Assert.NotNull(p.grad);
            Close.Tensor(golden.Load("grad." + pname), p.grad!, "grad." + pname);
            compared++;
        }
        Assert.True(compared > 40, $"only {compared} parameter gradients compared");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Eval_features_match_the_reference(string name)
    {
        var golden = new GoldenCase(name);
        using var scope = NewDisposeScope();
        using var model = golden.BuildModel();
        model.eval();
        using var _ = no_grad();
        Close.Tensor(golden.Load("features_global_pool"), model.Features(golden.Load("input")), "features_global_pool");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Plain_mae_loss_matches_the_reference(string name)
    {
        var golden = new GoldenCase(name);
        using var scope = NewDisposeScope();
        using var model = golden.BuildModel(Objective.Mae);
        model.train();
        var output = Objectives.Compute(model, golden.Load("input"), golden.Draws());
        Close.Scalar(golden.Scalar("mae_loss"), output.Total.item<float>(), "mae_loss");
    }

    [Theory]
    [InlineData("image2d")]
    [InlineData("sensor1d")]
    [InlineData("tokens")]
    [InlineData("tabular")]
    public void Second_order_gradients_are_not_the_first_order_ones(string name)
    {
        // Guards against the second-order term silently vanishing: our second-order gradients must differ from the
        // first-order fixture by far more than the tolerance, for the decoder that the inner step differentiates.
        var second = new GoldenCase(name);
        var first = new GoldenCase(name + "_first_order");
        using var scope = NewDisposeScope();
        using var model = second.BuildModel();
        model.train();
        Objectives.Compute(model, second.Load("input"), second.Draws()).Total.backward();
        int differing = 0;
        foreach (var (pname, p) in model.named_parameters())
        {
            var firstOrderGrad = first.Load("grad." + pname);
            using var scaleT = firstOrderGrad.abs().max();
            if (Close.MaxAbsDiff(p.grad!, firstOrderGrad) > 1e-2 * Math.Max(scaleT.item<float>(), 1e-12)) differing++;
        }
        Assert.True(differing >= 5, $"only {differing} gradients differ from the first-order fixture");
    }
}
