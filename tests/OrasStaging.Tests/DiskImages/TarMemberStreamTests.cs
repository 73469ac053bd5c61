using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using OrasStaging.DiskImages;
using OrasStaging.IO;
using OrasStaging.TestKit;

namespace OrasStaging.Tests.DiskImages;

/// <summary>containerDisk layers (tars written by .NET's own TarWriter in each format) and payloads that are no disk.</summary>
public class TarMemberStreamTests
{
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    /// <summary>A tar with other members before the disk: a long-named file (GNU L / pax path), a folder, the disk.</summary>
    private static string MakeTar(TempDir dir, string raw, TarEntryFormat format, string diskName, bool gzip = false, bool withDisk = true)
    {
        string path = dir.File(gzip ? "layer.tar.gz" : "layer.tar");
        using (var file = File.Create(path))
        using (Stream outer = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file)
        using (var writer = new TarWriter(outer, format, leaveOpen: true))
        {
            var note = NewEntry(format, TarEntryType.RegularFile, "usr/share/" + new string('n', 120) + "/notes.txt");
            note.DataStream = new MemoryStream(Encoding.UTF8.GetBytes("not the disk"));
            writer.WriteEntry(note);
            writer.WriteEntry(NewEntry(format, TarEntryType.Directory, "disk/"));
            writer.WriteEntry(NewEntry(format, TarEntryType.RegularFile, "disk/.wh.old.img"));
            if (withDisk)
            {
                var disk = NewEntry(format, TarEntryType.RegularFile, diskName);
                disk.DataStream = File.OpenRead(raw);
                writer.WriteEntry(disk);
            }
        }

        return path;
    }

    private static TarEntry NewEntry(TarEntryFormat format, TarEntryType type, string name) => format switch
    {
        TarEntryFormat.Gnu => new GnuTarEntry(type, name),
        TarEntryFormat.Pax => new PaxTarEntry(type, name),
        _ => new UstarTarEntry(type, name),
    };

    private async Task<DiskWriteResult> Write(string input, string output, DiskImageFormat format)
    {
        await using var stream = File.OpenRead(input);
        return await DiskImageWriter.WriteAsync(stream, output, new DiskWriteOptions { Format = format }, NullOperationSink.Instance, Timeout);
    }

    [Theory]
    [InlineData(TarEntryFormat.Pax, "disk/disk.img", false)]
    [InlineData(TarEntryFormat.Gnu, "./disk/fedora-41.raw", true)]
    [InlineData(TarEntryFormat.Ustar, "disk/d.img", true)]
    public async Task TheDiskMemberIsWrittenAndComparesIdentical(TarEntryFormat format, string name, bool gzip)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string layer = MakeTar(dir, raw, format, name, gzip);
        string output = dir.File("out.qcow2");

        var result = await Write(layer, output, DiskImageFormat.Qcow2);

        ImageTools.AssertIdentical(raw, output, "qcow2");
        Assert.Equal(new FileInfo(raw).Length, result.DecodedBytes);
    }

    [Fact]
    public async Task AQcow2InsideIsCopiedAsIs()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string qcow2 = dir.File("disk.qcow2");
        Assert.Equal(0, ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2).ExitCode);
        string layer = MakeTar(dir, qcow2, TarEntryFormat.Pax, "disk/disk.qcow2", gzip: true);
        string output = dir.File("out.qcow2");

        var result = await Write(layer, output, DiskImageFormat.Qcow2);

        Assert.Equal(File.ReadAllBytes(qcow2), File.ReadAllBytes(output));
        Assert.Equal(DiskImageFormat.Qcow2, result.Format);
    }

    [Fact]
    public async Task ConvertDiskImageTakesTheDiskOutOfASavedLayer()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string qcow2 = dir.File("disk.qcow2");
        Assert.Equal(0, ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2).ExitCode);
        string layer = MakeTar(dir, qcow2, TarEntryFormat.Pax, "disk/disk.qcow2");
        string output = dir.File("out.raw");

        // qcow2 in a plain tar to raw: the member is taken out for qemu-img.
        await DiskImageConverter.ConvertFileAsync(layer, output, new DiskWriteOptions { Format = DiskImageFormat.Raw, GrowBy = 1 << 20 },
            NullOperationSink.Instance, Timeout);

        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(output).AsSpan(0, (int)new FileInfo(raw).Length).ToArray());
        Assert.Equal(new FileInfo(raw).Length + (1 << 20), new FileInfo(output).Length);
    }

    [Fact]
    public async Task ExpandDiskImageTakesTheDiskOutOfAPlainTar()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string layer = MakeTar(dir, raw, TarEntryFormat.Gnu, "disk/disk.img");
        string output = dir.File("out.img");

        await DiskImageConverter.ExpandFileAsync(layer, output, NullOperationSink.Instance, Timeout);

        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(output));
    }

    [Fact]
    public async Task ATarWithoutADiskIsRefusedAndNothingIsWritten()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string layer = MakeTar(dir, raw, TarEntryFormat.Pax, "disk/x.img", gzip: true, withDisk: false);
        string output = dir.File("out.qcow2");

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Write(layer, output, DiskImageFormat.Qcow2));

        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.Contains("tar archive with no regular file under disk/", ex.Message);
        Assert.Contains("disk/.wh.old.img", ex.Message);
        Assert.False(File.Exists(output));
    }

    public static TheoryData<string, byte[]> NotDisks() => new()
    {
        { "a zip archive", Zip() },
        { "an HTML page", Encoding.UTF8.GetBytes("\n  <!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>") },
        { "an HTML page", Encoding.UTF8.GetBytes("<HTML><head></head></HTML>") },
        { "an ELF executable", new byte[] { 0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0, 0, 0, 0, 0 } },
        { "a JSON document", Encoding.UTF8.GetBytes("{\"errors\":[{\"code\":\"DENIED\"}]}") },
    };

    private static byte[] Zip()
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var w = new StreamWriter(zip.CreateEntry("report.txt").Open());
            w.Write("build report");
        }

        return ms.ToArray();
    }

    [Theory]
    [MemberData(nameof(NotDisks))]
    public async Task APayloadThatIsNoDiskIsRefusedNamingIt(string what, byte[] payload)
    {
        using var dir = new TempDir();
        string input = dir.File("payload.gz");
        using (var gz = new GZipStream(File.Create(input), CompressionLevel.Fastest))
        {
            gz.Write(payload);
        }

        string output = dir.File("out.img");

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Write(input, output, DiskImageFormat.Raw));

        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.Contains(what, ex.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void SizesAreReadInOctalAndBase256()
    {
        Assert.Equal(0x1234_5678_9AL, TarMemberStream.ParseNumber(new byte[] { 0x80, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0x9A }, "size"));
        Assert.Equal(8L << 30, TarMemberStream.ParseNumber(Encoding.ASCII.GetBytes("100000000000"), "size"));
        Assert.Equal(511L, TarMemberStream.ParseNumber(Encoding.ASCII.GetBytes(" 0000777\0   "), "size"));
        Assert.Throws<OrasStagingException>(() => TarMemberStream.ParseNumber(Encoding.ASCII.GetBytes("00000000009\0"), "size"));
    }

    [Fact]
    public async Task AMemberCutShortIsCorruptInput()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string layer = MakeTar(dir, raw, TarEntryFormat.Pax, "disk/disk.img");
        string cut = dir.File("cut.tar");
        var bytes = File.ReadAllBytes(layer);
        File.WriteAllBytes(cut, bytes.AsSpan(0, bytes.Length - (1 << 20)).ToArray());

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Write(cut, dir.File("out.img"), DiskImageFormat.Raw));

        Assert.Equal(ErrorCode.CorruptInput, ex.Code);
        Assert.Contains("disk/disk.img", ex.Message);
    }
}
