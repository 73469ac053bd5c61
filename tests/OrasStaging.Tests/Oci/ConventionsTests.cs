using OrasStaging.DiskImages;
using OrasStaging.Oci;
using OrasStaging.Oci.Conventions;

namespace OrasStaging.Tests.Oci;

/// <summary>The pure rules of Oci/Conventions and the whiteout rule: which entry, which layer, which file.</summary>
public class ConventionsTests
{
    private static PlatformEntry Entry(string digestChar, string os, string arch, string? disktype = null, string? artifactType = null) =>
        new("sha256:" + new string(digestChar[0], 64), "application/vnd.oci.image.manifest.v1+json", 100, os, arch, null)
        {
            Annotations = disktype is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["disktype"] = disktype },
            ArtifactType = artifactType,
        };

    private static readonly PlatformEntry[] Podman =
    {
        Entry("a", "linux", "amd64", "applehv"), Entry("b", "linux", "amd64", "hyperv"), Entry("c", "linux", "amd64", "qemu"),
        Entry("d", "linux", "arm64", "applehv"), Entry("e", "linux", "arm64", "qemu"),
    };

    [Theory]
    [InlineData(DiskImageFormat.Qcow2, null, "amd64", "c")]
    [InlineData(DiskImageFormat.Raw, null, "amd64", "a")]
    [InlineData(DiskImageFormat.Vhd, null, "amd64", "b")]
    [InlineData(DiskImageFormat.Qcow2, "applehv", "amd64", "a")]
    [InlineData(DiskImageFormat.Qcow2, null, "arm64", "e")]
    public void A_podman_index_is_chosen_by_disk_type_then_target_format_on_the_hosts_architecture(DiskImageFormat target, string? type, string hostArch, string expected)
    {
        var pick = IndexChoice.Choose(Podman, new ResolveOptions { TargetFormat = target, DiskType = type }, "linux", hostArch, "r");
        Assert.Equal(DiskConvention.Podman, pick.Convention);
        Assert.StartsWith("sha256:" + expected, pick.Entry.Digest);
    }

    [Fact]
    public void Without_a_type_or_a_format_that_decides_the_error_lists_the_types()
    {
        var ex = Assert.Throws<OrasStagingException>(() => IndexChoice.Choose(Podman, new ResolveOptions(), "linux", "amd64", "r"));
        Assert.Equal(ErrorCode.PlatformAmbiguous, ex.Code);
        Assert.Contains("applehv (raw), hyperv (vhdx), qemu (qcow2)", ex.Message);
        ex = Assert.Throws<OrasStagingException>(() => IndexChoice.Choose(Podman, new ResolveOptions { DiskType = "wsl" }, "linux", "amd64", "r"));
        Assert.Contains("no disk type 'wsl'", ex.Message);
    }

    [Fact]
    public void A_coreos_index_carries_the_disk_type_in_platform_os()
    {
        var entries = new[] { Entry("a", "metal", "amd64", artifactType: "application/vnd.diskimage.raw.gzip"), Entry("b", "qemu", "amd64", artifactType: "application/vnd.diskimage.qcow2") };
        var pick = IndexChoice.Choose(entries, new ResolveOptions { TargetFormat = DiskImageFormat.Qcow2 }, "linux", "amd64", "r");
        Assert.Equal((DiskConvention.DiskImage, "qemu"), (pick.Convention, pick.DiskType));
        Assert.Equal("metal", IndexChoice.Choose(entries, new ResolveOptions { Platform = "metal/amd64" }, "linux", "amd64", "r").DiskType);
        var layer = new OrasDescriptor { MediaType = "application/octet-stream", Digest = "sha256:" + new string('1', 64), Size = 1 };
        Assert.Equal("qcow2", LayerChoice.Describe(layer, "application/vnd.diskimage.qcow2", pick).DiskFormat);
    }

    [Fact]
    public void Disk_image_entries_under_an_ordinary_platform_are_narrowed_by_the_target_format()
    {
        var entries = new[] { Entry("a", "linux", "amd64", artifactType: "application/vnd.diskimage.raw.gzip"), Entry("b", "linux", "amd64", artifactType: "application/vnd.diskimage.qcow2") };
        Assert.StartsWith("sha256:b", IndexChoice.Choose(entries, new ResolveOptions { TargetFormat = DiskImageFormat.Qcow2 }, "linux", "amd64", "r").Entry.Digest);
        Assert.StartsWith("sha256:a", IndexChoice.Choose(entries, new ResolveOptions { TargetFormat = DiskImageFormat.Raw }, "linux", "amd64", "r").Entry.Digest);
        var layer = new OrasDescriptor { MediaType = "application/octet-stream", Digest = "sha256:" + new string('1', 64), Size = 1 };
        var pick = IndexChoice.Choose(entries, new ResolveOptions { TargetFormat = DiskImageFormat.Raw }, "linux", "amd64", "r");
        Assert.Equal((DiskConvention.DiskImage, "raw"), (LayerChoice.Describe(layer, null, pick).Convention, LayerChoice.Describe(layer, null, pick).DiskFormat));
    }

    [Fact]
    public void A_platform_index_is_chosen_by_platform_as_before()
    {
        var entries = new[] { Entry("a", "linux", "arm64"), Entry("b", "linux", "amd64") };
        var pick = IndexChoice.Choose(entries, new ResolveOptions(), "linux", "amd64", "r");
        Assert.Null(pick.Convention);
        Assert.StartsWith("sha256:b", pick.Entry.Digest);
    }

    private static OrasDescriptor KubeVirtDisk(char c, string name, string size) => new()
    {
        MediaType = "application/vnd.kubevirt.disk.raw+zstd",
        Digest = "sha256:" + new string(c, 64),
        Size = 10,
        Annotations = new Dictionary<string, string> { ["io.kubevirt.disk.name"] = name, ["io.kubevirt.disk.size"] = size },
    };

    [Fact]
    public void KubeVirt_disks_are_chosen_by_name_and_declare_their_size()
    {
        var layers = new[] { KubeVirtDisk('1', "rootdisk", "10Gi"), KubeVirtDisk('2', "datadisk", "5368709120") };
        var chosen = LayerChoice.Choose(layers, "application/vnd.kubevirt.virtualmachine.v1", new ResolveOptions { DiskName = "datadisk" }, null, "r");
        Assert.Equal((DiskConvention.KubeVirt, "datadisk", "raw", 5L << 30), (chosen.Convention, chosen.DiskName, chosen.DiskFormat, chosen.DeclaredSize!.Value));
        var ex = Assert.Throws<OrasStagingException>(() => LayerChoice.Choose(layers, null, new ResolveOptions(), null, "r"));
        Assert.Equal(ErrorCode.NoImageLayer, ex.Code);
        Assert.Contains("rootdisk, datadisk", ex.Message);
        Assert.Equal(10L << 30, LayerChoice.Choose(layers[..1], null, new ResolveOptions(), null, "r").DeclaredSize);
    }

    [Theory]
    [InlineData("10Gi", 10L << 30)]
    [InlineData("512Mi", 512L << 20)]
    [InlineData("3G", 3_000_000_000L)]
    [InlineData("1073741824", 1L << 30)]
    [InlineData("1.5Gi", null)]
    [InlineData("-1", null)]
    [InlineData("9Ei", null)]
    [InlineData("lots", null)]
    public void The_declared_size_is_a_kubernetes_quantity(string text, long? expected) =>
        Assert.Equal(expected, LayerChoice.SizeOf(text));

    [Fact]
    public void A_podman_layer_title_tells_the_format_without_the_index()
    {
        var layer = new OrasDescriptor { MediaType = "application/zstd", Digest = "sha256:" + new string('1', 64), Size = 1, Title = "podman-machine.x86_64.qemu.qcow2.zst" };
        var d = LayerChoice.Describe(layer, null, null);
        Assert.Equal((DiskConvention.Podman, "qcow2"), (d.Convention, d.DiskFormat));
    }

    [Fact]
    public void Whiteouts_of_upper_layers_hide_files_folders_and_opaque_folders()
    {
        var upper = new Whiteouts();
        upper.Add(new[] { "disk/.wh.old.qcow2" });
        Assert.True(Whiteouts.IsHidden("disk/old.qcow2", upper));
        Assert.False(Whiteouts.IsHidden("disk/new.qcow2", upper));
        upper.Add(new[] { ".wh.disk" });
        Assert.True(Whiteouts.IsHidden("disk/new.qcow2", upper));
        var opaque = new Whiteouts();
        opaque.Add(new[] { "disk/.wh..wh..opq" });
        Assert.True(Whiteouts.IsHidden("disk/any.img", opaque));
        Assert.False(Whiteouts.IsHidden("etc/motd", opaque));
        Assert.False(Whiteouts.IsHidden("disk/any.img", null));
        Assert.True(Whiteouts.IsWhiteout("disk/.wh.x") && Whiteouts.IsWhiteout(".wh.disk") && !Whiteouts.IsWhiteout("disk/x.wh.y"));
    }
}
