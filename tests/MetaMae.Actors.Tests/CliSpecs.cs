using MetaMae.Actors.Runs;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>What a user sees for bad input: exit code 2 and a message naming the key and what is allowed.</summary>
public sealed class CliSpecs : TempDirTest
{
    private static (int Code, string Err) Invoke(params string[] args)
    {
        var err = new StringWriter();
        var previous = Console.Error;
        Console.SetError(err);
        try
        {
            return (Cli.Program.Main(args), err.ToString());
        }
        finally
        {
            Console.SetError(previous);
        }
    }

    [Fact]
    public void An_unknown_preset_names_the_key_and_the_allowed_values()
    {
        var (code, err) = Invoke("pretrain", "--set", "dataset.name=fashion-mnist", "--preset", "huge");
        Assert.Equal(2, code);
        Assert.Contains("config key 'preset'", err);
        Assert.Contains("dabs, small, tiny", err);
    }

    [Fact]
    public void An_unknown_key_is_named()
    {
        var (code, err) = Invoke("pretrain", "--config", Path.Combine(TestRuns.RepoRoot, "config", "runs", "fashion-mnist.json"), "--set", "stepz=5");
        Assert.Equal(2, code);
        Assert.Contains("unknown key 'stepz'", err);
    }

    [Fact]
    public void A_bad_model_and_a_transfer_only_data_set_are_refused()
    {
        var (code, err) = Invoke("pretrain", "--set", "dataset.name=fashion-mnist", "--model", "bert");
        Assert.Equal(2, code);
        Assert.Contains("config key 'model'", err);
        Assert.Contains("mae, metamae", err);
        var (code2, err2) = Invoke("pretrain", "--set", "dataset.name=cifar10");
        Assert.Equal(2, code2);
        Assert.Contains("transfer set", err2);
    }

    [Fact]
    public void A_missing_data_directory_names_the_path_and_the_expected_layout()
    {
        var missing = Path.Combine(Root, "nowhere");
        var (code, err) = Invoke("pretrain", "--set", "dataset.name=pamap2", "--set", $"dataset.root={missing}", "--set", "steps=1", "--out", Root, "--quiet");
        Assert.Equal(Cli.ExitCodes.Failed, code);
        Assert.Contains($"opening data set pamap2 at {missing} failed: {Path.Combine(missing, "Protocol")}", err);
        Assert.Contains("subject101.dat", err);
        using var store = new Runs.RunStore(Path.Combine(Root, "runs.db"));
        var run = Assert.Single(store.Runs());
        Assert.Equal(RunStatus.Failed, run.Status);
        Assert.Contains("subject101.dat", store.Error(run.Id));
    }

    [Theory]
    [InlineData("../x")]
    [InlineData("/abs")]
    [InlineData("a/b")]
    public void A_run_name_that_is_a_path_is_refused_before_anything_is_written(string name)
    {
        var (code, err) = Invoke("pretrain", "--set", "dataset.name=fashion-mnist", "--set", $"name={name}", "--out", Root, "--quiet");
        Assert.Equal(Cli.ExitCodes.Refused, code);
        Assert.Contains("config key 'name'", err);
        Assert.Empty(Directory.GetFileSystemEntries(Root));
    }

    [Fact]
    public void Evaluate_refuses_zero_epochs_naming_the_option()
    {
        var (code, err) = Invoke("evaluate", Root, "--dataset", "fashion-mnist", "--epochs", "0");
        Assert.Equal(Cli.ExitCodes.Refused, code);
        Assert.Contains("'--epochs'", err);
    }

    [Fact]
    public void The_readme_commands_exist_and_the_make_run_config_is_valid()
    {
        var readme = File.ReadAllText(Path.Combine(TestRuns.RepoRoot, "README.md"));
        Assert.Contains("make run", readme);
        Assert.Contains("make test", readme);
        var makefile = File.ReadAllText(Path.Combine(TestRuns.RepoRoot, "Makefile"));
        Assert.Contains("\ntest:", makefile);
        Assert.Contains("\nrun:", makefile);
        Assert.Contains("config/runs/fashion-mnist.json", makefile);
        var ci = File.ReadAllText(Path.Combine(TestRuns.RepoRoot, ".ci", "run"));
        Assert.Contains("make test", ci);
        var config = RunSpec.Load(Path.Combine(TestRuns.RepoRoot, "config", "runs", "fashion-mnist.json"), []);
        Assert.Equal(PretrainingModel.MetaMae, config.Model);
        Assert.NotEmpty(config.Evaluation.Datasets);
    }

    [Fact]
    public void The_main_job_runs_end_to_end_with_its_real_config_as_a_user_runs_it()
    {
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(5), "run", "--config",
            Path.Combine(TestRuns.RepoRoot, "config", "runs", "fashion-mnist.json"),
            "--set", "steps=20", "--set", "checkpoint_every=10", "--set", "evaluation.epochs=5", "--out", Root);
        Assert.True(code == 0, output + err);
        Assert.Contains("random init", output);
        Assert.Contains("MetaMAE", output);
        Assert.Contains("completed at step 20", output);
        // Resuming a finished run has nothing to train or probe, and prints the same comparison table.
        var runDir = Directory.GetDirectories(Root).Single();
        var (again, table, againErr) = MetamaeCommand.Run(TimeSpan.FromMinutes(2), "resume", runDir);
        Assert.True(again == 0, table + againErr);
        Assert.Contains("random init", table);
        Assert.Contains("completed at step 20", table);
    }

    [Fact]
    public void Ones_own_table_pretrains_and_probes_under_its_own_name_with_the_raw_input_anchor()
    {
        // The real UCI letter table, read as a user's own CSV (not through the catalog's 'letter' entry).
        var csv = Path.GetFullPath(Path.Combine(TestRuns.RepoRoot, "..", "shared", "data", "tabular", "letter_recognition.csv"));
        var set = $$"""{"name": "glyphs", "format": "table", "path": "{{csv}}", "label_column": "lettr", "max_train": 600, "max_test": 300}""";
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(5), "run", "--set", $"dataset={set}", "--set", $"evaluation.datasets=[{set}]",
            "--set", "steps=20", "--set", "checkpoint_every=10", "--set", "batch_size=32", "--set", "name=glyphs", "--out", Root);
        Assert.True(code == 0, output + err);
        // Redirected output: Markdown rows on one line each, no colour codes, nothing cut at column 80.
        Assert.DoesNotContain("\u001b[", output);
        Assert.Contains("| glyphs | accuracy | raw input (the flattened input) | - |", output);
        Assert.Contains("| glyphs | accuracy | random init | 0 |", output);
        Assert.Contains("probe: standardised features; full-batch L-BFGS to convergence", output);
        var runDir = Directory.GetDirectories(Root).Single();
        var report = File.ReadAllText(Path.Combine(runDir, "report.md"));
        Assert.Contains("| glyphs | accuracy | - | raw input", report);
        Assert.Contains("weight decay", report);
        // The pretraining split's standardisation travels with the checkpoint (16 features).
        var meta = Model.Checkpoints.Checkpoint.ReadMeta(Path.Combine(runDir, "checkpoints", "step-00000020"));
        Assert.Equal(16, meta.InputMean!.Length);
        Assert.All(meta.InputStd!, s => Assert.True(s > 0));
    }

    [Fact]
    public void A_table_too_wide_for_a_step_is_refused_before_training_with_the_figures_never_an_abort()
    {
        // 20,000 columns x 50 rows: 20,000 tokens a sample. libtorch once asked for 27.6 GB and aborted the process (rc
        // 134, the record left "running"); now the config is refused (exit 2) before anything starts, naming the figures.
        var csv = Path.Combine(Root, "wide.csv");
        using (var w = new StreamWriter(csv))
        {
            w.WriteLine("label," + string.Join(',', Enumerable.Range(0, 20_000).Select(i => $"c{i}")));
            var random = new Random(3);
            for (int r = 0; r < 50; r++) w.WriteLine($"{r % 2}," + string.Join(',', Enumerable.Range(0, 20_000).Select(_ => random.Next(10))));
        }
        var set = $$"""{"name": "wide", "format": "table", "path": "{{csv}}"}""";
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(2), "pretrain", "--set", $"dataset={set}", "--set", "steps=5",
            "--set", "name=wide", "--out", Path.Combine(Root, "out"), "--quiet");
        Assert.True(code == Cli.ExitCodes.Refused, $"exit {code}: {output}{err}");
        Assert.Contains("wide makes 20,000 tokens a sample", err);
        Assert.Contains("GB", err);
        Assert.False(Directory.Exists(Path.Combine(Root, "out")) && Directory.EnumerateFileSystemEntries(Path.Combine(Root, "out")).Any(),
            "a refused run leaves nothing behind");
    }

    [Fact]
    public void Runs_on_a_record_that_is_a_directory_is_refused_saying_so()
    {
        Directory.CreateDirectory(Path.Combine(Root, "runs.db"));
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(1), "runs", "--out", Root);
        Assert.True(code == Cli.ExitCodes.Refused, $"exit {code}: {output}{err}");
        Assert.Contains("runs.db is a directory, not a run record", err);
    }
}
