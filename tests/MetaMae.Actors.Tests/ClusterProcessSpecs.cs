using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MetaMae.Actors.Reporting;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>A `metamae node` child process; its output lines are kept, and it is killed when disposed.</summary>
public sealed class NodeProcess : IDisposable
{
    private readonly Process process;
    public ConcurrentQueue<string> Lines { get; } = new();
    public string Roles { get; }

    public NodeProcess(string roles, int port, string? seed, string resumeFrom, string? failPoints = null)
    {
        Roles = roles;
        var args = new List<string> { "node", "--roles", roles, "--port", port.ToString(), "--resume-from", resumeFrom };
        if (seed is not null) args.AddRange(["--seed-nodes", seed]);
        var psi = TestRuns.Cli([.. args]);
        if (failPoints is not null) psi.Environment[FailPoints.Variable] = failPoints;
        process = Process.Start(psi)!;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Lines.Enqueue(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public void WaitUp(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!Lines.Any(l => l.StartsWith("node up", StringComparison.Ordinal)))
        {
            if (process.HasExited || clock.Elapsed > timeout)
                throw new TimeoutException($"node {Roles} did not come up: {string.Join("\n", Lines)}");
            Thread.Sleep(50);
        }
    }

    public bool HasExited => process.HasExited;

    /// <summary>SIGKILL: no leaving, no handover; the cluster finds out by itself.</summary>
    public void Kill()
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
    }

    public void Dispose()
    {
        if (!process.HasExited) Kill();
        process.Dispose();
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>
/// Real `metamae node` processes on loopback: a data node, an evaluator node and the coordinator's node are killed with
/// SIGKILL mid-run; the singleton moves, the shard is reassigned, the probe is asked elsewhere, and the run ends with
/// the weights of a run nobody interrupted.
/// </summary>
[Collection(StraightRunCollection.Name)]
public sealed class ClusterProcessSpecs(StraightRun straight) : TempDirTest
{
    [Fact]
    public async Task Killing_a_data_node_an_evaluator_node_and_the_coordinators_node_mid_run_loses_no_batch_and_ends_with_the_straight_weights()
    {
        var runs = Path.Combine(Root, "runs");
        var rng = new Random(20261128);
        int firstPort = NodeProcess.FreePort();
        var seed = $"127.0.0.1:{firstPort}";
        var nodes = new List<NodeProcess>();
        try
        {
            var coordinator1 = new NodeProcess("coordinator", firstPort, null, runs);
            nodes.Add(coordinator1);
            coordinator1.WaitUp(TimeSpan.FromSeconds(60));
            int secondPort = NodeProcess.FreePort();
            var coordinator2 = new NodeProcess("coordinator", secondPort, seed, runs);
            var learner = new NodeProcess("learner", 0, seed, runs, failPoints: "learner.step=sleep(250)"); // a learner slow enough to kill around
            var data1 = new NodeProcess("data", 0, seed, runs);
            var data2 = new NodeProcess("data", 0, seed, runs);
            var evaluator1 = new NodeProcess("evaluator", 0, seed, runs, failPoints: "evaluator.probe=sleep(3000)"); // probes in flight when it dies
            var evaluator2 = new NodeProcess("evaluator", 0, seed, runs);
            nodes.AddRange([coordinator2, learner, data1, data2, evaluator1, evaluator2]);
            foreach (var n in nodes) n.WaitUp(TimeSpan.FromSeconds(60));

            var args = ProcessRuns.PretrainArgs(runs, StraightRun.Steps, "--set", "evaluation.epochs=2",
                "--set", "evaluation.datasets=[{\"name\":\"fashion-mnist\",\"root\":\"embedded\",\"max_train\":200,\"max_test\":100}]",
                "--cluster", seed).ToList();
            args[0] = "run";
            var (client, output, error) = ProcessRuns.Start(null, [.. args]);
            using (client)
            {
                async Task Reach(long step)
                {
                    var clock = Stopwatch.StartNew();
                    while (ProcessRuns.Reached(runs) < step && clock.Elapsed < TimeSpan.FromMinutes(2) && !client.HasExited) await Task.Delay(10);
                    if (client.HasExited || ProcessRuns.Reached(runs) < step)
                        Assert.Fail($"the run did not reach step {step}: {(client.HasExited ? await output + await error : "still running")}\n--- nodes:\n" +
                                    string.Join("\n", nodes.SelectMany(n => n.Lines.TakeLast(10).Select(l => $"[{n.Roles}] {l}"))));
                }
                // One failure at a time: each kill waits until the cluster has downed the previous node (the split-brain
                // resolver downs everything when reachability keeps changing within its stable-after window).
                async Task Handled(int hostsLeft)
                {
                    var clock = Stopwatch.StartNew();
                    while (coordinator1.Lines.Count(l => l.Contains("host left", StringComparison.Ordinal)) < hostsLeft)
                    {
                        if (clock.Elapsed > TimeSpan.FromSeconds(90)) Assert.Fail($"node {hostsLeft} was not downed in time");
                        await Task.Delay(50);
                    }
                }
                await Reach(rng.Next(15, 30));
                data2.Kill();
                await Handled(1);
                await Reach(Math.Min(ProcessRuns.Reached(runs) + rng.Next(3, 10), 75));
                evaluator1.Kill();
                await Handled(2);
                await Reach(Math.Min(ProcessRuns.Reached(runs) + rng.Next(3, 10), 100));
                coordinator1.Kill(); // the oldest node: the run manager singleton and the run's coordinator live here
                Assert.True(client.WaitForExit(TimeSpan.FromMinutes(4)), "the run did not end after the kills");
                client.WaitForExit();
                Assert.True(client.ExitCode == 0, $"exit {client.ExitCode}: {await output}{await error}\n--- nodes:\n" +
                                                  string.Join("\n", nodes.SelectMany(n => n.Lines.TakeLast(15))));
            }

            var runDir = Directory.GetDirectories(runs).Single();
            Assert.Equal(straight.FinalWeights, TestRuns.FinalWeights(runDir, StraightRun.Steps));
            // No batch lost or trained twice: after the final line of step k the data position is k batches in.
            var metrics = Path.Combine(runDir, "metrics.jsonl");
            var steps = RunArtifacts.ReadSteps(metrics);
            Assert.Equal(Enumerable.Range(1, (int)StraightRun.Steps).Select(i => (long)i), steps.Keys);
            foreach (var (k, e) in steps) Assert.Equal((0L, k * 16), (e.GetProperty("epoch").GetInt64(), e.GetProperty("offset").GetInt64()));
            // Each data node's counters are recorded (bad records per node), besides their sum.
            var dataNodes = File.ReadLines(metrics).Where(l => l.Contains("\"kind\":\"data\"", StringComparison.Ordinal))
                .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("node").GetString()).Where(n => n != "all").Distinct().Count();
            Assert.True(dataNodes >= 2, $"counters of {dataNodes} data node(s) recorded");
            // Steps trained again after the coordinator moved: at most one checkpoint interval.
            int stepLines = File.ReadLines(metrics).Count(l => l.Contains("\"kind\":\"step\"", StringComparison.Ordinal));
            Assert.InRange(stepLines - (int)StraightRun.Steps, 0, 20);

            // The cluster's record, asked through a node that is still up (the first one is dead).
            var (listed, table, listErr) = ProcessRuns.Run(null, TimeSpan.FromMinutes(1), "runs", "--cluster", $"127.0.0.1:{secondPort}");
            Assert.True(listed == 0, table + listErr);
            Assert.Contains("completed", table);
            Assert.Contains($"{StraightRun.Steps}/{StraightRun.Steps}", table);
        }
        finally
        {
            foreach (var n in nodes) n.Dispose();
        }
    }
}
