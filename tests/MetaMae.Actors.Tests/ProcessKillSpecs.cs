using System.Diagnostics;
using MetaMae.Actors.Reporting;
using MetaMae.Actors.Runs;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>The uninterrupted 120-step run every interrupted one must end equal to, trained once for all who compare with it.</summary>
public sealed class StraightRun : IDisposable
{
    public const long Steps = 120;
    public string Root { get; } = Directory.CreateTempSubdirectory("metamae-straight-").FullName;
    public string RunDirectory { get; }

    public StraightRun()
    {
        var (code, output, err) = TestRuns.RunCli(TimeSpan.FromMinutes(3), ProcessRuns.PretrainArgs(Path.Combine(Root, "out")));
        Assert.True(code == 0, output + err);
        RunDirectory = Directory.GetDirectories(Path.Combine(Root, "out")).Single();
    }

    public byte[] FinalWeights => TestRuns.FinalWeights(RunDirectory, Steps);

    public void Dispose() => Directory.Delete(Root, recursive: true);
}

/// <summary>Child processes of the metamae command: start, watch their progress, signal them.</summary>
public static class ProcessRuns
{
    public static string[] PretrainArgs(string outDir, long steps = StraightRun.Steps, params string[] extra) =>
    [
        "pretrain", "--set", "dataset.name=fashion-mnist", "--set", "dataset.root=embedded", "--set", "preset=tiny",
        "--set", $"steps={steps}", "--set", "batch_size=16", "--set", "lr=0.001", "--set", "checkpoint_every=20", "--set", "keep_checkpoints=3",
        "--set", "threads=1", "--set", "device=cpu", "--set", "seed=3", "--set", "data_parallelism=2", "--set", "name=kill",
        "--out", outDir, "--quiet", .. extra,
    ];

    /// <summary>Starts metamae with <paramref name="failPoints"/> in its environment (METAMAE_FAILPOINTS), output captured.</summary>
    public static (Process Process, Task<string> Out, Task<string> Err) Start(string? failPoints, params string[] args)
    {
        var psi = TestRuns.Cli(args);
        if (failPoints is not null) psi.Environment[FailPoints.Variable] = failPoints;
        var p = Process.Start(psi)!;
        lock (Started) Started.Add((p.Id, p.StartTime));
        return (p, p.StandardOutput.ReadToEndAsync(), p.StandardError.ReadToEndAsync());
    }

    /// <summary>Every process <see cref="Start"/> started, by id and start time (a recycled id is not another's).</summary>
    private static readonly List<(int Id, DateTime StartTime)> Started = [];

    /// <summary>
    /// Kills whatever <see cref="Start"/> started that still runs: a spec that failed mid-run (an assertion thrown while
    /// its client waited) must not leave the client behind. Called when each spec's temporary directory goes.
    /// </summary>
    public static void KillLeftovers()
    {
        List<(int Id, DateTime StartTime)> all;
        lock (Started)
        {
            all = [.. Started];
            Started.Clear();
        }
        foreach (var (id, started) in all)
        {
            try
            {
                using var p = Process.GetProcessById(id);
                if (p.StartTime == started && !p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // already gone
            }
        }
    }

    public static (int Code, string Out, string Err) Run(string? failPoints, TimeSpan timeout, params string[] args)
    {
        var (p, output, err) = Start(failPoints, args);
        using (p)
        {
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"metamae {string.Join(' ', args)} did not end within {timeout}: {err.Result}");
            }
            p.WaitForExit();
            return (p.ExitCode, output.Result, err.Result);
        }
    }

    /// <summary>
    /// Waits (polling, bounded by <paramref name="timeout"/>) until <paramref name="condition"/> holds while the run's
    /// client <paramref name="client"/> is still running; fails naming <paramref name="what"/>, with the client's error
    /// lines first, all it said, and <paramref name="context"/> (the nodes' last lines) when the run ended or time ran out.
    /// </summary>
    public static async Task Until(Process client, Task<string> output, Task<string> error, Func<bool> condition, string what, TimeSpan timeout,
        Func<string> context)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (client.HasExited)
            {
                var said = await output + await error;
                var cause = string.Join("\n", said.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)));
                Assert.Fail($"the run ended (exit {client.ExitCode}) while waiting for {what}: {cause}\n{said}\n{context()}");
            }
            if (clock.Elapsed > timeout) Assert.Fail($"timed out waiting for {what}\n{context()}");
            await Task.Delay(20);
        }
    }

    /// <summary>The newest step in the only run directory under <paramref name="outDir"/>'s metrics, or 0.</summary>
    public static long Reached(string outDir)
    {
        var dirs = Directory.Exists(outDir) ? Directory.GetDirectories(outDir) : [];
        return dirs.Length == 1 ? RunArtifacts.ReadSteps(Path.Combine(dirs[0], "metrics.jsonl")).Keys.DefaultIfEmpty(0).Max() : 0;
    }

    /// <summary>Waits until the run has trained <paramref name="step"/> steps (bounded), failing if the process ended first.</summary>
    public static void WaitForStep(Process p, string outDir, long step)
    {
        var clock = Stopwatch.StartNew();
        while (Reached(outDir) < step && clock.Elapsed < TimeSpan.FromMinutes(2) && !p.HasExited) Thread.Sleep(10);
        Assert.False(p.HasExited, $"the run ended before step {step}");
        Assert.True(Reached(outDir) >= step, $"the run did not reach step {step} in time");
    }

    public static void Signal(Process p, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", p.Id.ToString()])!;
        kill.WaitForExit();
    }

    public const int SigKillExit = 128 + 9;
}

/// <summary>
/// A long run's promise: kill the process at any moment (mid-step, inside a checkpoint write, inside a resume), resume,
/// and end where an uninterrupted run ends, bit for bit.
/// </summary>
[CollectionDefinition(Name)]
public sealed class StraightRunCollection : ICollectionFixture<StraightRun>
{
    public const string Name = "compared with the straight run";
}

[Collection(StraightRunCollection.Name)]
public sealed class ProcessKillSpecs(StraightRun straight) : TempDirTest
{
    [Fact]
    public void Kills_at_seeded_steps_inside_steps_checkpoint_writes_and_resume_end_with_the_uninterrupted_weights()
    {
        var rng = new Random(20261128);
        var outDir = Path.Combine(Root, "killed");
        var timeout = TimeSpan.FromMinutes(2);

        // 1. An outside SIGKILL once the run has passed a seeded step.
        long first = rng.Next(5, 40);
        var (p, _, _) = ProcessRuns.Start(null, ProcessRuns.PretrainArgs(outDir));
        using (p)
        {
            ProcessRuns.WaitForStep(p, outDir, first);
            p.Kill();
            p.WaitForExit();
        }
        var runDir = Directory.GetDirectories(outDir).Single();
        long reached = ProcessRuns.Reached(outDir);

        // 2. Killed inside the write of a seeded checkpoint (after its weights are on disk, before its manifest).
        long writeAt = (reached / 20 + 1 + rng.Next(0, 2)) * 20;
        var (code, _, err) = ProcessRuns.Run($"checkpoint.write=kill@{writeAt}", timeout, "resume", runDir, "--quiet");
        Assert.True(code == ProcessRuns.SigKillExit, $"exit {code}: {err}");
        Assert.Contains($"fail point 'checkpoint.write' kills the process at {writeAt}", err);
        Assert.False(File.Exists(Path.Combine(runDir, "checkpoints", $"step-{writeAt:D8}", Checkpoint.ManifestFile)));
        Assert.NotEmpty(Directory.GetDirectories(Path.Combine(runDir, "checkpoints"), $".step-{writeAt:D8}.tmp-*"));

        // 3. Killed inside a resume: the checkpoint is loaded, nothing trained yet.
        (code, _, err) = ProcessRuns.Run("learner.resume=kill", timeout, "resume", runDir, "--quiet");
        Assert.True(code == ProcessRuns.SigKillExit, $"exit {code}: {err}");

        // 4. Killed at a seeded step, before that step is applied.
        long stepAt = writeAt + rng.Next(1, 20);
        (code, _, err) = ProcessRuns.Run($"learner.step=kill@{stepAt}", timeout, "resume", runDir, "--quiet");
        Assert.True(code == ProcessRuns.SigKillExit, $"exit {code}: {err}");
        Assert.True(ProcessRuns.Reached(outDir) < stepAt, "the kill came after the step it was set for");

        // 5. The last resume completes: the same weights as the run nobody interrupted, and a record that says so.
        string output;
        (code, output, err) = ProcessRuns.Run(null, timeout, "resume", runDir, "--quiet");
        Assert.True(code == 0, output + err);
        Assert.Equal(straight.FinalWeights, TestRuns.FinalWeights(runDir, StraightRun.Steps));
        Assert.Empty(Directory.GetDirectories(Path.Combine(runDir, "checkpoints"), ".step-*")); // leftovers cleaned
        var (listCode, list, _) = TestRuns.RunCli(TimeSpan.FromMinutes(1), "runs", "--out", outDir);
        Assert.Equal(0, listCode);
        Assert.Contains("completed", list);
        Assert.Contains($"{StraightRun.Steps}/{StraightRun.Steps}", list);
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task A_signal_mid_run_stops_with_a_final_checkpoint_and_resume_ends_with_the_uninterrupted_weights(string signal)
    {
        var outDir = Path.Combine(Root, signal);
        long at = new Random(signal.GetHashCode(StringComparison.Ordinal) & 0xffff).Next(10, 60);
        var (p, stdout, stderr) = ProcessRuns.Start(null, ProcessRuns.PretrainArgs(outDir));
        int exit;
        using (p)
        {
            ProcessRuns.WaitForStep(p, outDir, at);
            ProcessRuns.Signal(p, signal);
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), $"the run did not stop after SIG{signal}");
            p.WaitForExit();
            exit = p.ExitCode;
        }
        var (output1, error1) = (await stdout, await stderr);
        Assert.True(exit == Cli.ExitCodes.Stopped, $"exit {exit}: {error1}");
        Assert.Contains(signal == "TERM" ? "stopping (SIGTERM)" : "stopping (Ctrl-C)", error1);
        Assert.Contains("stopped at step", output1);
        var runDir = Directory.GetDirectories(outDir).Single();
        long stoppedAt = ProcessRuns.Reached(outDir);
        Assert.InRange(stoppedAt, at, StraightRun.Steps - 1);
        Checkpoint.Verify(Path.Combine(runDir, "checkpoints", $"step-{stoppedAt:D8}")); // the final checkpoint is where it stopped
        using (var store = new RunStore(Path.Combine(outDir, "runs.db")))
            Assert.Equal((RunStatus.Stopped, stoppedAt), (store.Runs().Single().Status, store.Runs().Single().Step));

        var (code, output, err) = ProcessRuns.Run(null, TimeSpan.FromMinutes(2), "resume", runDir, "--quiet");
        Assert.True(code == 0, output + err);
        Assert.Equal(straight.FinalWeights, TestRuns.FinalWeights(runDir, StraightRun.Steps));
        // Steps after the stop were trained once: the resumed run picked up exactly at the final checkpoint.
        var lines = File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl"));
        Assert.Equal(1, lines.Count(l => l.Contains($"\"step\":{stoppedAt + 1},", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_final_checkpoint_that_misses_the_grace_period_ends_the_process_with_its_own_code()
    {
        var outDir = Path.Combine(Root, "grace");
        // Every checkpoint write stalls for 60 s, the step-0 one included: the stop cannot be honoured in time.
        var (p, _, stderr) = ProcessRuns.Start("checkpoint.write=sleep(60000)", ProcessRuns.PretrainArgs(outDir, 120, "--set", "stop_grace_seconds=1"));
        int exit;
        using (p)
        {
            while (!Directory.Exists(outDir) || Directory.GetDirectories(outDir).Length == 0) Thread.Sleep(20);
            Thread.Sleep(1000);
            ProcessRuns.Signal(p, "TERM");
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "the process outlived its grace period");
            p.WaitForExit();
            exit = p.ExitCode;
        }
        var error = await stderr;
        Assert.True(exit == Cli.ExitCodes.StoppedWithoutCheckpoint, $"exit {exit}: {error}");
        Assert.Contains("not written within stop_grace_seconds (1 s)", error);
        using var store = new RunStore(Path.Combine(outDir, "runs.db"));
        Assert.Equal(RunStatusText.Parse("aborted"), store.Runs().Single().Status);
    }

    [Fact]
    public void Resume_of_a_live_run_is_refused_naming_its_owner_and_a_killed_owners_lock_is_taken_over()
    {
        var outDir = Path.Combine(Root, "live");
        var (p, _, _) = ProcessRuns.Start("learner.step=sleep(100)", ProcessRuns.PretrainArgs(outDir));
        string runDir;
        int pid = p.Id;
        using (p)
        {
            ProcessRuns.WaitForStep(p, outDir, 3);
            runDir = Directory.GetDirectories(outDir).Single();
            var (code, _, err) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "resume", runDir, "--quiet");
            Assert.Equal(Cli.ExitCodes.Refused, code);
            Assert.Contains($"is in use by pid {p.Id} on host {Environment.MachineName}", err);
            Assert.False(p.HasExited);
            p.Kill(); // SIGKILL: the lock file stays, naming a dead owner
            p.WaitForExit();
        }
        Assert.Equal(pid, RunDirectoryLock.Owner(runDir)!.Pid);
        var (resumed, output, error) = ProcessRuns.Run(null, TimeSpan.FromMinutes(2), "resume", runDir, "--quiet");
        Assert.True(resumed == 0, output + error);
        Assert.Equal(straight.FinalWeights, TestRuns.FinalWeights(runDir, StraightRun.Steps));
    }
}

/// <summary>Whatever fails in a real process, it ends within a bounded time with the cause named and the exit code of a failed run.</summary>
public sealed class ProcessFaultSpecs : TempDirTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(90);

    [Fact]
    public void A_run_record_full_of_random_bytes()
    {
        var outDir = Path.Combine(Root, "out");
        Directory.CreateDirectory(outDir);
        var junk = new byte[32 * 1024];
        new Random(1).NextBytes(junk);
        File.WriteAllBytes(Path.Combine(outDir, "runs.db"), junk);
        var (code, output, err) = ProcessRuns.Run(null, Bound, ProcessRuns.PretrainArgs(outDir, 10));
        Assert.True(code == Cli.ExitCodes.Failed, $"exit {code}: {output}{err}");
        Assert.Contains(Path.Combine(outDir, "runs.db"), err);
        Assert.Contains("not an SQLite database", err);
        var (listCode, _, listErr) = TestRuns.RunCli(Bound, "runs", "--out", outDir);
        Assert.Equal(Cli.ExitCodes.Refused, listCode);
        Assert.Contains("not an SQLite database", listErr);
        Assert.DoesNotContain("Unhandled", listErr);
    }

    [Fact]
    public void A_data_set_file_with_zero_records()
    {
        var data = Path.Combine(Root, "empty-mnist");
        Directory.CreateDirectory(data);
        Data.Formats.Idx.Write(Path.Combine(data, "train-images-idx3-ubyte.gz"), [0, 28, 28], []);
        Data.Formats.Idx.Write(Path.Combine(data, "train-labels-idx1-ubyte.gz"), [0], []);
        var (code, output, err) = ProcessRuns.Run(null, Bound, ProcessRuns.PretrainArgs(Path.Combine(Root, "out"), 10, "--set", $"dataset.root={data}"));
        Assert.True(code == Cli.ExitCodes.Failed, $"exit {code}: {output}{err}");
        Assert.Contains("-ubyte.gz: holds 0 records", err);
        using var store = new RunStore(Path.Combine(Root, "out", "runs.db"));
        Assert.Equal(RunStatusText.Parse("failed"), store.Runs().Single().Status);
    }

    [Fact]
    public void A_full_disk_while_writing_metrics()
    {
        if (!File.Exists("/dev/full")) return; // Linux's always-full device stands in for a full disk
        var outDir = Path.Combine(Root, "out");
        var (code, _, err) = ProcessRuns.Run("learner.step=kill@5", Bound, ProcessRuns.PretrainArgs(outDir, 40));
        Assert.True(code == ProcessRuns.SigKillExit, err);
        var runDir = Directory.GetDirectories(outDir).Single();
        var metrics = Path.Combine(runDir, "metrics.jsonl");
        File.Delete(metrics);
        File.CreateSymbolicLink(metrics, "/dev/full");
        string output;
        (code, output, err) = ProcessRuns.Run(null, Bound, "resume", runDir, "--quiet");
        Assert.True(code == Cli.ExitCodes.Failed, $"exit {code}: {output}{err}");
        Assert.Contains("writing metrics.jsonl", err);
        Assert.Contains("No space left on device", err);
        File.Delete(metrics);
        using var store = new RunStore(Path.Combine(outDir, "runs.db"));
        Assert.Equal(RunStatusText.Parse("failed"), store.Runs().Single().Status);
        Assert.Contains("No space left on device", store.Error(store.Runs().Single().Id));
    }
}
