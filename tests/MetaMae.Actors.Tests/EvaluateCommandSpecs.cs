namespace MetaMae.Actors.Tests;

/// <summary>`metamae evaluate` probes a checkpoint as its run did (the run's config.json), unless told otherwise.</summary>
[Collection(StraightRunCollection.Name)]
public sealed class EvaluateCommandSpecs(StraightRun straight) : TempDirTest
{
    [Fact]
    public void Evaluate_uses_the_runs_probe_settings_by_default_and_options_override_them()
    {
        // A run whose config probed fashion-mnist with the paper's protocol, 3 epochs at lr 0.003, on at most 120 / 60 samples.
        var run = Path.Combine(Root, "run");
        var step = Path.Combine(run, "checkpoints", $"step-{StraightRun.Steps:D8}");
        Directory.CreateDirectory(step);
        foreach (var f in Directory.GetFiles(Path.Combine(straight.RunDirectory, "checkpoints", $"step-{StraightRun.Steps:D8}")))
            File.Copy(f, Path.Combine(step, Path.GetFileName(f)));
        var config = TestRuns.Tiny(Root) with
        {
            Evaluation = new Protocol.EvaluationConfig
            {
                Protocol = Protocol.ProbeProtocol.Dabs, Epochs = 3, Lr = 0.003, Datasets = [new Protocol.DatasetRef { Name = "fashion-mnist", Root = "embedded", MaxTrain = 120, MaxTest = 60 }],
            },
        };
        File.WriteAllText(Path.Combine(run, "config.json"), config.ToJson());

        var (code, output, error) = MetamaeCommand.Run(TimeSpan.FromMinutes(2), "evaluate", step, "--dataset", "fashion-mnist");
        Assert.True(code == 0, output + error);
        Assert.Contains("protocol dabs, epochs 3, lr 0.003", output);
        Assert.Contains("120 train / 60 test samples", output);
        Assert.Contains("on the raw input (the flattened input)", output);
        Assert.Contains("probe: raw features; Adam lr 0.003", output);

        (code, output, error) = MetamaeCommand.Run(TimeSpan.FromMinutes(2), "evaluate", step, "--dataset", "fashion-mnist", "--epochs", "1", "--max-train", "64");
        Assert.True(code == 0, output + error);
        Assert.Contains("epochs 1, lr 0.003", output);
        Assert.Contains("64 train / 60 test samples", output);

        // --protocol overrides the run's: the converged probe, with its chosen weight decay said.
        (code, output, error) = MetamaeCommand.Run(TimeSpan.FromMinutes(2), "evaluate", step, "--dataset", "fashion-mnist", "--protocol", "standardized");
        Assert.True(code == 0, output + error);
        Assert.Contains("protocol standardized, at most 120", output);
        Assert.Contains("chosen from 1, 0.1", output);
    }
}
