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
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(3), TestRuns.PretrainArgs(Path.Combine(Root, "out")));
        Assert.True(code == 0, output + err);
        RunDirectory = Directory.GetDirectories(Path.Combine(Root, "out")).Single();
    }

    public byte[] FinalWeights => TestRuns.FinalWeights(RunDirectory, Steps);

    public void Dispose() => Directory.Delete(Root, recursive: true);
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
        var (p, _, _) = ProcessRuns.Start(null, TestRuns.PretrainArgs(outDir));
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
        var (listCode, list, _) = MetamaeCommand.Run(TimeSpan.FromMinutes(1), "runs", "--out", outDir);
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
        var (p, stdout, stderr) = ProcessRuns.Start(null, TestRuns.PretrainArgs(outDir));
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
        var (p, _, stderr) = ProcessRuns.Start("checkpoint.write=sleep(60000)", TestRuns.PretrainArgs(outDir, 120, "--set", "stop_grace_seconds=1"));
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

    [Theory]
    [InlineData("TERM")]
    [InlineData("KILL")]
    public async Task A_signal_the_moment_the_run_directory_appears_leaves_a_run_that_resume_completes(string signal)
    {
        // Before the node is up (about a second after start): SIGTERM once exited 143 (no handler yet) and a kill left a
        // directory holding only run.lock, which resume refused as "not a run directory".
        var outDir = Path.Combine(Root, "early-" + signal);
        var (p, _, stderr) = ProcessRuns.Start(null, TestRuns.PretrainArgs(outDir, 20));
        using (p)
        {
            var clock = Stopwatch.StartNew();
            while (!(Directory.Exists(outDir) && Directory.GetDirectories(outDir).Any(d => !Path.GetFileName(d).StartsWith('.')))
                   && !p.HasExited && clock.Elapsed < TimeSpan.FromMinutes(1))
                Thread.Sleep(2);
            Assert.False(p.HasExited, "the run ended before its directory appeared");
            ProcessRuns.Signal(p, signal);
            Assert.True(p.WaitForExit(TimeSpan.FromMinutes(1)), "the process outlived the signal by a minute");
            p.WaitForExit();
            if (signal == "TERM") Assert.True(p.ExitCode == Cli.ExitCodes.Stopped, $"exit {p.ExitCode}: {await stderr}");
            else Assert.Equal(ProcessRuns.SigKillExit, p.ExitCode);
        }
        var runDir = Directory.GetDirectories(outDir).Single(); // no staging directory left behind either
        var (code, output, err) = ProcessRuns.Run(null, TimeSpan.FromMinutes(3), "resume", runDir, "--quiet");
        Assert.True(code == Cli.ExitCodes.Completed, output + err);
        Assert.Equal(20, MetricsFile.Lines(runDir, "step").Max(e => e.GetProperty("step").GetInt64()));
    }

    [Fact]
    public void A_second_signal_ends_the_process_at_once_and_the_record_says_aborted()
    {
        var outDir = Path.Combine(Root, "twice");
        var (p, _, _) = ProcessRuns.Start("learner.step=sleep(200)", TestRuns.PretrainArgs(outDir));
        using (p)
        {
            ProcessRuns.WaitForStep(p, outDir, 3);
            // Two signals sent back to back may reach the process as one (the kernel does not queue a pending SIGTERM):
            // the first is sent, then more until the process is gone. Any after the first handled one is "a second".
            ProcessRuns.Signal(p, "TERM");
            var clock = Stopwatch.StartNew();
            while (!p.WaitForExit(TimeSpan.FromMilliseconds(50)) && clock.Elapsed < TimeSpan.FromSeconds(30)) ProcessRuns.Signal(p, "TERM");
            Assert.True(p.HasExited, "a second signal did not end the process at once");
            p.WaitForExit();
            Assert.Equal(128 + 15, p.ExitCode); // the signal's own code, as README lists
        }
        using var store = new RunStore(Path.Combine(outDir, "runs.db"));
        var row = store.Runs().Single();
        Assert.Equal(RunStatus.Aborted, row.Status);
        Assert.Contains("second signal", store.Error(row.Id));
    }

    [Fact]
    public void Resume_of_a_live_run_is_refused_naming_its_owner_and_a_killed_owners_lock_is_taken_over()
    {
        var outDir = Path.Combine(Root, "live");
        var (p, _, _) = ProcessRuns.Start("learner.step=sleep(100)", TestRuns.PretrainArgs(outDir));
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
        var (code, output, err) = ProcessRuns.Run(null, Bound, TestRuns.PretrainArgs(outDir, 10));
        Assert.True(code == Cli.ExitCodes.Failed, $"exit {code}: {output}{err}");
        Assert.Contains(Path.Combine(outDir, "runs.db"), err);
        Assert.Contains("not an SQLite database", err);
        var (listCode, _, listErr) = MetamaeCommand.Run(Bound, "runs", "--out", outDir);
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
        var (code, output, err) = ProcessRuns.Run(null, Bound, TestRuns.PretrainArgs(Path.Combine(Root, "out"), 10, "--set", $"dataset.root={data}"));
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
        var (code, _, err) = ProcessRuns.Run("learner.step=kill@5", Bound, TestRuns.PretrainArgs(outDir, 40));
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
