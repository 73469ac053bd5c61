using OrasStaging.Staging;

namespace OrasStaging.Tests.Staging;

public class CijoeConfigTests
{
    private const string Config = """
        [cijoe.transport.qemu_guest]
        hostname = "localhost"

        [system-imaging.images.debian-13-x86_64]
        cloud.url = "https://cloud.debian.org/debian-13.qcow2"
        disk.path = "{{ local.env.HOME }}/disk/debian-13.qcow2"

        [system-imaging.images.Ubuntu-2604-x86_64]
        oras.url = "oras://ghcr.io/safl/nosi/ubuntu-2604-headless@sha256:1111111111111111111111111111111111111111111111111111111111111111"
        disk.path = "{{ local.env.HOME }}/disk/ubuntu-2604.qcow2"

        [system-imaging.images.freebsd-15-x86_64]
        oras.url = "oras://{{local.env.REG}}/safl/nosi/freebsd-15:latest"
        disk.path = "/srv/disk/freebsd-15.qcow2"
        """;

    private static readonly Dictionary<string, string> Env = new() { ["HOME"] = "/home/ci", ["REG"] = "127.0.0.1:5000" };

    private static IReadOnlyList<ConfigImage> Read(string text, string[]? include = null, string[]? exclude = null, ListSink? sink = null)
    {
        using var dir = new TempFolder();
        string path = Path.Combine(dir.Path, "cijoe.toml");
        File.WriteAllText(path, text);
        return CijoeConfig.Read(path, include, exclude, sink ?? new ListSink(), name => Env.GetValueOrDefault(name));
    }

    [Fact]
    public void ReadsOrasEntriesAndPassesOverTheOthers()
    {
        var sink = new ListSink();
        var images = Read(Config, sink: sink);
        Assert.Equal(2, images.Count);
        Assert.Equal(new ConfigImage("Ubuntu-2604-x86_64",
            "oras://ghcr.io/safl/nosi/ubuntu-2604-headless@sha256:1111111111111111111111111111111111111111111111111111111111111111",
            "/home/ci/disk/ubuntu-2604.qcow2"), images[0]);
        Assert.Equal(new ConfigImage("freebsd-15-x86_64", "oras://127.0.0.1:5000/safl/nosi/freebsd-15:latest",
            "/srv/disk/freebsd-15.qcow2"), images[1]);
        Assert.Contains(sink.Lines, l => l.Contains("debian-13-x86_64") && l.Contains("no oras.url"));
    }

    [Fact]
    public void IncludeAndExcludeAreCaseInsensitiveWildcards()
    {
        Assert.Equal(new[] { "Ubuntu-2604-x86_64" }, Read(Config, include: new[] { "ubuntu-*" }).Select(i => i.Name));
        Assert.Equal(new[] { "freebsd-15-x86_64" }, Read(Config, exclude: new[] { "UBUNTU*" }).Select(i => i.Name));
        Assert.Empty(Read(Config, include: new[] { "debian*" }));
        Assert.Equal(2, Read(Config, include: new[] { "*-x86_64" }).Count);
        Assert.Equal(new[] { "freebsd-15-x86_64" }, Read(Config, include: new[] { "[f]reebsd-1?-*" }).Select(i => i.Name));
    }

    [Fact]
    public void UnsetVariableIsAConfigError()
    {
        var ex = Assert.Throws<OrasStagingException>(() => Read(Config.Replace("local.env.REG", "local.env.NOPE")));
        Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
        Assert.Contains("NOPE", ex.Message);
    }

    [Fact]
    public void BadTomlAndMissingTableAreConfigErrors()
    {
        Assert.Equal(ErrorCode.ConfigInvalid, Assert.Throws<OrasStagingException>(() => Read("[x\nfoo = ")).Code);
        Assert.Equal(ErrorCode.ConfigInvalid, Assert.Throws<OrasStagingException>(() => Read("[other]\na = 1\n")).Code);
    }

    [Fact]
    public void AFolderAnUnreadableFileAndMalformedTomlAreMappedErrors()
    {
        using var dir = new TempFolder();
        var folder = Assert.Throws<OrasStagingException>(() => CijoeConfig.Read(dir.Path, null, null, new ListSink()));
        Assert.Equal(ErrorCode.InvalidArgument, folder.Code);
        Assert.Contains("folder", folder.Message);
        Assert.NotNull(folder.RecommendedAction);

        // A file another handle holds exclusively cannot be read (FileShare.None is enforced on Unix too).
        string locked = Path.Combine(dir.Path, "locked.toml");
        File.WriteAllText(locked, Config);
        using (new FileStream(locked, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            var unreadable = Assert.Throws<OrasStagingException>(() => CijoeConfig.Read(locked, null, null, new ListSink()));
            Assert.Equal(ErrorCode.ConfigInvalid, unreadable.Code);
            Assert.NotNull(unreadable.RecommendedAction);
        }

        foreach (string bad in new[] { "[x\nfoo = ", "a = 1\na = 2\n", "\u0000\u0001", "[system-imaging.images]\nx = [1, \"a\"\n" })
        {
            var ex = Assert.Throws<OrasStagingException>(() => Read(bad));
            Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
            Assert.NotNull(ex.RecommendedAction);
        }

        var empty = Assert.Throws<OrasStagingException>(() => Read(""));
        Assert.Equal(ErrorCode.ConfigInvalid, empty.Code);
        Assert.NotNull(empty.RecommendedAction);
    }

    [Fact]
    public void OrasWithoutDiskPathIsAConfigError()
    {
        var ex = Assert.Throws<OrasStagingException>(() => Read("[system-imaging.images.a]\noras.url = \"oras://r/x:1\"\n"));
        Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
        Assert.Contains("disk.path", ex.Message);
    }
}
