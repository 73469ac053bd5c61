namespace OrasStaging.TestKit;

public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("usage: OrasStaging.TestKit <command> ...");
        return 2;
    }
}
