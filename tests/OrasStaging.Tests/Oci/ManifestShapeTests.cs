using System.Text;
using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

public class ManifestShapeTests
{
    [Theory]
    [InlineData("{not json")]
    [InlineData("[]")]
    [InlineData("\"a string\"")]
    public void AManifestThatIsNotAJsonObjectIsAProtocolError(string body)
    {
        var ex = Assert.Throws<OrasStagingException>(() =>
            RegistryClient.ParseManifest(Encoding.UTF8.GetBytes(body), "application/vnd.oci.image.manifest.v1+json"));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("[1, 2]")]
    public void AnIndexThatIsNotAJsonObjectIsAProtocolError(string body)
    {
        var ex = Assert.Throws<OrasStagingException>(() => RegistryClient.ParseIndex(Encoding.UTF8.GetBytes(body)));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    [Fact]
    public void AWellFormedManifestStillParses()
    {
        string digest = "sha256:" + new string('a', 64);
        string body = "{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"application/vnd.nosi.disk-image.layer.v1+gzip\",\"digest\":\""
            + digest + "\",\"size\":42,\"annotations\":{\"org.opencontainers.image.title\":\"d.img.gz\"}}]}";
        var (layers, _, _) = RegistryClient.ParseManifest(Encoding.UTF8.GetBytes(body), "application/vnd.oci.image.manifest.v1+json");
        var layer = Assert.Single(layers);
        Assert.Equal(digest, layer.Digest);
        Assert.Equal(42, layer.Size);
        Assert.Equal("d.img.gz", layer.Title);
    }
}
