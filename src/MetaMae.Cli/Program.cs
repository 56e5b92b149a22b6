using System.CommandLine;
using MetaMae.Cli.Commands;

namespace MetaMae.Cli;

public static class Program
{
    /// <summary>Every command and option of the program (also what the deployment specs parse their arguments with).</summary>
    public static RootCommand Commands()
    {
        var root = new RootCommand("metamae: modality-agnostic self-supervised pretraining (MetaMAE) on an Akka.NET pipeline.");
        foreach (var c in RunCommands.Create()) root.Add(c);
        root.Add(NodeCommand.Create());
        root.Add(DataCommand.Create());
        root.Add(BenchCommand.Create());
        root.Add(BenchmarkCommand.Create());
        return root;
    }

    public static int Main(string[] args)
    {
        Output.Configure();
        var root = Commands();
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is ArgumentException or Data.DataLayoutException or FileNotFoundException or DirectoryNotFoundException
                                      or Model.Checkpoints.CorruptCheckpointException or FormatException or InvalidDataException
                                      or Actors.Runs.RunDirectoryBusyException or Actors.Runs.RunStoreException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Refused;
        }
        catch (Exception e)
        {
            // Anything else is a bug or an environment failure: one line for the user, the stack for the report.
            Console.Error.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            Console.Error.WriteLine(e.StackTrace);
            return ExitCodes.Failed;
        }
    }
}
