using MetaMae.Actors.Runs;
using MetaMae.Actors.Checkpoints;
using MetaMae.Model;
using MetaMae.Model.Checkpoints;

namespace MetaMae.Actors.Tests;

public sealed class CheckpointStoreSpecs : TempDirTest
{
    private void Save(CheckpointStore store, long step)
    {
        var config = TestRuns.Tiny(Root).ToModelConfig();
        using var model = MaskedAutoencoder.Create(config, 1);
        Checkpoint.Save(store.PathFor(step), model, null, new CheckpointMeta { Step = step, Seed = 1, Config = ModelConfigRecord.From(config) });
    }

    [Fact]
    public void Pruning_keeps_the_last_N_step_zero_and_the_best()
    {
        var store = new CheckpointStore(Root, keep: 2);
        foreach (var s in new long[] { 0, 10, 20, 30, 40, 50 }) Save(store, s);
        store.Prune(best: 20);
        Assert.Equal(new long[] { 50, 40, 20, 0 }, store.List().Select(c => c.Step).ToArray());
    }

    [Fact]
    public void The_latest_valid_checkpoint_skips_corrupt_and_half_written_ones_with_a_warning()
    {
        var warnings = new List<string>();
        var store = new CheckpointStore(Root, keep: 5, warnings.Add);
        foreach (var s in new long[] { 10, 20, 30 }) Save(store, s);
        File.Delete(Path.Combine(store.PathFor(30), Checkpoint.ManifestFile));           // half written
        File.AppendAllText(Path.Combine(store.PathFor(20), Checkpoint.MetaFile), " ");   // corrupted
        Directory.CreateDirectory(Path.Combine(store.Directory, ".step-00000040.tmp-abc")); // a temporary is never a candidate
        var latest = store.LatestValid();
        Assert.Equal(10, latest!.Value.Step);
        Assert.Equal(2, warnings.Count);
        Assert.Contains(warnings, w => w.Contains("step-00000030") && w.Contains("no manifest.json"));
        Assert.Contains(warnings, w => w.Contains("step-00000020") && w.Contains("meta.json"));
    }

    [Fact]
    public void A_file_where_a_checkpoint_directory_belongs_is_moved_aside_not_left_to_block_that_steps_write()
    {
        // Seen: resume failed three learner restarts with "already exists" writing step 40 over a regular file.
        var run = Directory.CreateTempSubdirectory("metamae-ckpt-").FullName;
        try
        {
            var store = new CheckpointStore(run, keep: 3, _ => { });
            Directory.CreateDirectory(store.Directory);
            File.WriteAllText(store.PathFor(40), "not a checkpoint");
            var actions = store.CleanLeftovers();
            Assert.Contains(actions, a => a.Contains("a file where a checkpoint directory belongs"));
            Assert.False(File.Exists(store.PathFor(40)));
            var kept = Assert.Single(Directory.GetFiles(Path.Combine(run, "corrupt-checkpoints"), "*", SearchOption.AllDirectories));
            Assert.Equal("not a checkpoint", File.ReadAllText(kept));
        }
        finally
        {
            Directory.Delete(run, recursive: true);
        }
    }
}
