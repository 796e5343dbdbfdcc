import Foundation
import RelayCore
import RelayControl
import Testing

@Suite struct ProxyConfigTests {
    func load(_ text: String) -> Result<ConfigFile, ConfigError> {
        do { return .success(try ConfigFile.parse(Data(text.utf8), origin: "test.json")) } catch { return .failure(error) }
    }

    func message(_ text: String) -> String? {
        if case let .failure(error) = load(text) { return error.description }
        return nil
    }

    @Test func aProxyAloneIsAConfigAndItsDownstreamsGetListenerTracking() throws {
        let config = try load("""
            {"proxies":[{"upstream":"eth0","downstream":["eth1","eth2"],"groups":["239.0.0.0/8","ff3e::/16"]}],
             "queriers":[{"interface":"eth2","families":["ipv4","ipv6"],"robustness":3}]}
            """).get()
        #expect(config.rules.isEmpty)
        let proxy = try #require(config.proxies.first)
        #expect(proxy.upstream == InterfaceName("eth0")! && proxy.downstream == [InterfaceName("eth1")!, InterfaceName("eth2")!])
        #expect(proxy.groups.map(\.description) == ["239.0.0.0/8", "ff3e::/16"])
        // eth2's own entry as written; eth1 gets one with the defaults for both families.
        #expect(config.effectiveQueriers.map(\.interface.rawValue) == ["eth2", "eth1"])
        #expect(config.effectiveQueriers[0].configuration.robustness == 3)
        #expect(config.effectiveQueriers[1].families == [.ipv4, .ipv6])
        #expect(config.effectiveQueriers[1].configuration == ListenerConfiguration())
        // Serialized and parsed back: the same file.
        #expect(try ConfigFile.parse(config.serialized()) == config)
    }

    @Test func errorsSayWhatAndWhere() {
        func proxy(_ body: String) -> String { #"{"proxies":[{"upstream":"eth0","downstream":["eth1"],"groups":["239.0.0.0/8"]},"# + body + "]}" }
        #expect(message(proxy(#"{"upstream":"eth3","downstream":["eth3"],"groups":["239.0.0.0/8"]}"#))
            == "test.json: proxies[1]: upstream eth3 is also listed downstream")
        #expect(message(proxy(#"{"upstream":"eth3","downstream":["eth4"],"groups":["239.1.0.0/8"]}"#))
            == "test.json: proxies[1]: groups: \"239.1.0.0/8\" has bits set past its prefix length; the prefix is 239.0.0.0/8")
        #expect(message(proxy(#"{"upstream":"eth3","downstream":["eth4"],"groups":["10.0.0.0/8"]}"#))
            == "test.json: proxies[1]: groups: \"10.0.0.0/8\" is not within multicast (224.0.0.0/4, ff00::/8)")
        #expect(message(proxy(#"{"upstream":"eth3","downstream":[],"groups":["239.0.0.0/8"]}"#))
            == "test.json: proxies[1]: \"downstream\" needs at least one interface")
        #expect(message(proxy(#"{"upstream":"eth3","downstream":["eth4"],"group":["239.0.0.0/8"]}"#))?
            .contains("unknown key \"group\"") == true)
        #expect(message(proxy(#"{"upstream":"eth1","downstream":["eth0"],"groups":["239.5.0.0/16"]}"#))
            == "test.json: proxies: proxies[0]'s upstream eth0 is a downstream of proxies[1] for overlapping groups (a forwarding loop)")
        #expect(message(#"{"rules":[{"in":"eth5:239.1.1.1:1","out":["eth0:239.2.2.2:1"]}],"#
                        + #""proxies":[{"upstream":"eth0","downstream":["eth1"],"groups":["239.0.0.0/8"]}]}"#)?
            .contains("sends into the upstream range of proxies[0] (a forwarding loop)") == true)
        #expect(message(#"{"queriers":[{"interface":"eth1","families":["ipv4"]}],"#
                        + #""proxies":[{"upstream":"eth0","downstream":["eth1"],"groups":["ff3e::/16"]}]}"#)
            == "test.json: proxies[0]: downstream eth1 has a queriers entry without ipv6, which group ff3e::/16 needs (add it to that entry's families)")
    }
}
